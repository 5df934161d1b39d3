//! The blackhole sink: counts points and discards them. With it a job measures the source
//! and the engine alone (the benchmark's null sink).

use super::{Batch, BatchConfig, Sink, WriteError};
use crate::model::Point;
use serde::Deserialize;

/// `sink: {type: blackhole}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Points per batch, as a real sink would gather them.
    #[serde(default)]
    pub batch_size: Option<usize>,
}

/// Discards everything it is given.
pub struct BlackholeSink {
    batching: BatchConfig,
}

impl BlackholeSink {
    /// A blackhole with `config`'s batch sizes.
    pub fn new(config: &BlackholeConfig) -> Self {
        let mut batching = BatchConfig::default();
        if let Some(rows) = config.batch_size {
            batching.max_rows = rows.max(1);
        }
        Self { batching }
    }
}

/// A count of points.
#[derive(Default)]
pub struct Counted(usize);

impl Batch for Counted {
    fn push(&mut self, _point: &Point) -> Result<(), String> {
        self.0 += 1;
        Ok(())
    }
    fn len(&self) -> usize {
        self.0
    }
    fn bytes(&self) -> usize {
        0
    }
    fn split(self) -> Option<(Self, Self)> {
        (self.0 > 1).then(|| (Counted(self.0 / 2), Counted(self.0 - self.0 / 2)))
    }
    fn records(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
    fn clear(&mut self) {
        self.0 = 0;
    }
}

#[async_trait::async_trait]
impl Sink for BlackholeSink {
    type Batch = Counted;
    fn new_batch(&self) -> Counted {
        Counted::default()
    }
    fn batching(&self) -> &BatchConfig {
        &self.batching
    }
    async fn write(&self, _batch: &Counted) -> Result<(), WriteError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "blackhole (points are counted and discarded)".into()
    }
}

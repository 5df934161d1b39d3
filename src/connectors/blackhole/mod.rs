//! The blackhole sink: counts points and discards them (and CDC deletes). With it a job measures the source
//! and the engine alone (the benchmark's null sink).

use crate::job::{Job, JobError};
use crate::model::Point;
use crate::sink::{AnySink, Batch, BatchConfig, Sink, SinkContext, SinkSpec, WriteError};

/// `type: blackhole`, a sink only.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "blackhole",
    source: None,
    sink: Some(|job| {
        let batching = BatchConfig::parse(&job.file.sink, job)?;
        Ok(Box::new(BlackholeSpec(batching)))
    }),
};

/// `sink: {type: blackhole}`: it takes only the batching and retry keys.
struct BlackholeSpec(BatchConfig);

impl SinkSpec for BlackholeSpec {
    fn kind(&self) -> &'static str {
        "blackhole"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.0.check(job)?;
        crate::sink::refuse_path_keys(job, "blackhole")
    }
    fn build(&self, _context: &SinkContext<'_>) -> Result<AnySink, String> {
        Ok(AnySink::new(BlackholeSink::new(&self.0)))
    }
}

/// Discards everything it is given.
pub struct BlackholeSink {
    batching: BatchConfig,
}

impl BlackholeSink {
    /// A blackhole that batches as `batching` says.
    pub fn new(batching: &BatchConfig) -> Self {
        Self {
            batching: batching.clone(),
        }
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
    /// CDC deletes are discarded too (the engine counts them), so a CDC job with deletes
    /// can measure its source and engine alone.
    async fn delete(&self, _points: &[Point]) -> Result<(), WriteError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "blackhole (points are counted and discarded)".into()
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Err("a blackhole keeps nothing to verify".into())
    }
}

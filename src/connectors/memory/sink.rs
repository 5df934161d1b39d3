//! The memory target as a sink, with its scripted faults.

use super::{Crash, DeleteMode, MemoryTarget};
use crate::model::Point;
use crate::sink::{Batch, BatchConfig, Sink, WriteError};
use std::sync::Arc;

/// Writes points into a [`MemoryTarget`].
pub struct MemorySink {
    target: Arc<MemoryTarget>,
    name: String,
    deletes: DeleteMode,
    batching: BatchConfig,
}

impl MemorySink {
    /// The sink into the target named `name`.
    pub fn new(name: &str, deletes: DeleteMode, batching: BatchConfig) -> Self {
        Self {
            target: super::target(name),
            name: name.to_string(),
            deletes,
            batching,
        }
    }

    /// Runs one request: its delay, its scripted failure, and `apply` unless the target
    /// crashed.
    async fn request(&self, apply: impl FnOnce(&mut super::Points)) -> Result<(), WriteError> {
        let fate = self.target.fate();
        if !fate.delay.is_zero() {
            tokio::time::sleep(fate.delay).await;
        }
        let crashed = || WriteError::Fatal {
            message: "the memory target's scripted crash".into(),
        };
        if fate.crash == Crash::Before {
            self.target.crash();
        }
        if fate.fail_before && fate.crash == Crash::No {
            return Err(transient("failed before writing"));
        }
        if !self.target.apply(apply) {
            return Err(crashed());
        }
        if fate.crash == Crash::AfterApplying {
            self.target.crash();
            return Err(crashed());
        }
        if fate.fail_after {
            return Err(transient("failed after writing"));
        }
        Ok(())
    }
}

fn transient(what: &str) -> WriteError {
    WriteError::Transient {
        message: format!("the memory target {what} (scripted)"),
        retry_after: None,
    }
}

/// Points of one request.
#[derive(Default)]
pub struct MemoryBatch {
    points: Vec<Point>,
    bytes: usize,
    /// The target, for its scripted panic.
    target: Option<Arc<MemoryTarget>>,
}

impl Batch for MemoryBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        if let Some(target) = &self.target {
            target.pushed();
        }
        self.bytes += 64 + point.fields.len() * 16;
        self.points.push(point.clone());
        Ok(())
    }

    fn len(&self) -> usize {
        self.points.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.points.len() < 2 {
            return None;
        }
        let tail = self.points.split_off(self.points.len() / 2);
        let half = self.bytes / 2;
        Some((
            MemoryBatch {
                points: self.points,
                bytes: half,
                target: self.target.clone(),
            },
            MemoryBatch {
                points: tail,
                bytes: half,
                target: self.target,
            },
        ))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        self.points.iter().map(Point::to_json).collect()
    }

    fn clear(&mut self) {
        self.points.clear();
        self.bytes = 0;
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    type Batch = MemoryBatch;

    fn new_batch(&self) -> MemoryBatch {
        MemoryBatch {
            target: Some(self.target.clone()),
            ..MemoryBatch::default()
        }
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn write(&self, batch: &MemoryBatch) -> Result<(), WriteError> {
        self.request(|stored| {
            for p in &batch.points {
                let fields = stored
                    .entry((p.measurement.clone(), p.tags.clone(), p.time))
                    .or_default();
                for (k, v) in &p.fields {
                    fields.insert(k.clone(), v.clone());
                }
            }
        })
        .await
    }

    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        let mode = self.deletes;
        let target = self.target.clone();
        self.request(|stored| {
            for p in points {
                let key = (p.measurement.clone(), p.tags.clone(), p.time);
                if target.loses_delete(&key) {
                    continue;
                }
                match mode {
                    DeleteMode::Point => {
                        stored.remove(&key);
                    }
                    DeleteMode::Fields => {
                        if let Some(fields) = stored.get_mut(&key) {
                            for (k, _) in &p.fields {
                                fields.remove(k);
                            }
                            if fields.is_empty() {
                                stored.remove(&key);
                            }
                        }
                    }
                }
            }
        })
        .await
    }

    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        let stored = self.target.points.lock().unwrap_or_else(|p| p.into_inner());
        Ok(points
            .iter()
            .filter(|p| {
                stored
                    .get(&(p.measurement.clone(), p.tags.clone(), p.time))
                    .is_some_and(|fields| p.fields.iter().any(|(k, _)| fields.contains_key(k)))
            })
            .cloned()
            .collect())
    }

    fn describe(&self) -> String {
        format!("the memory target `{}`", self.name)
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Err("verify cannot read a memory target back".into())
    }
}

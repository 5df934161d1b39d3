//! A sink with its batch type erased: what a connector's factory returns ([`AnySink`]), so
//! the runner holds any sink in one type and the engine, generic over [`Sink`], is built
//! once for it.
//!
//! The cost is one indirect call per point pushed into a batch and per request; the batch
//! itself is the connector's own type, encoding into its own buffer as before.

use super::{Batch, BatchConfig, ReadBack, SeriesWindow, Sink, WriteError};
use crate::model::Point;
use std::any::Any;

/// A connector's batch, behind a pointer.
pub struct ErasedBatch(Box<dyn DynBatch>);

/// [`Batch`] without `Self` by value, so that it can be a trait object.
trait DynBatch: Send + Sync {
    fn push(&mut self, point: &Point) -> Result<(), String>;
    fn len(&self) -> usize;
    fn bytes(&self) -> usize;
    fn split(self: Box<Self>) -> Option<(ErasedBatch, ErasedBatch)>;
    fn records(&self) -> Vec<serde_json::Value>;
    fn pushed_order(&self) -> Vec<usize>;
    fn clear(&mut self);
    fn as_any(&self) -> &dyn Any;
}

impl<B: Batch> DynBatch for B {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        Batch::push(self, point)
    }
    fn len(&self) -> usize {
        Batch::len(self)
    }
    fn bytes(&self) -> usize {
        Batch::bytes(self)
    }
    fn split(self: Box<Self>) -> Option<(ErasedBatch, ErasedBatch)> {
        let (a, b) = Batch::split(*self)?;
        Some((ErasedBatch(Box::new(a)), ErasedBatch(Box::new(b))))
    }
    fn records(&self) -> Vec<serde_json::Value> {
        Batch::records(self)
    }
    fn pushed_order(&self) -> Vec<usize> {
        Batch::pushed_order(self)
    }
    fn clear(&mut self) {
        Batch::clear(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Batch for ErasedBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        self.0.push(point)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn bytes(&self) -> usize {
        self.0.bytes()
    }
    fn split(self) -> Option<(Self, Self)> {
        self.0.split()
    }
    fn records(&self) -> Vec<serde_json::Value> {
        self.0.records()
    }
    fn pushed_order(&self) -> Vec<usize> {
        self.0.pushed_order()
    }
    fn clear(&mut self) {
        self.0.clear()
    }
}

impl ErasedBatch {
    /// The connector's own batch inside; a batch of another sink is a bug.
    fn downcast<B: Batch>(&self) -> &B {
        self.0
            .as_any()
            .downcast_ref::<B>()
            .expect("a batch is written by the sink that made it")
    }
}

/// [`Sink`] without its batch type, so that it can be a trait object.
#[async_trait::async_trait]
trait DynSink: Send + Sync {
    fn new_batch(&self) -> ErasedBatch;
    fn batching(&self) -> &BatchConfig;
    async fn write(&self, batch: &ErasedBatch) -> Result<(), WriteError>;
    async fn delete(&self, points: &[Point]) -> Result<(), WriteError>;
    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError>;
    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError>;
    fn range_deletes_tag_supersets(&self) -> bool;
    async fn prepare(&self) -> Result<(), WriteError>;
    async fn finish(&self) -> Result<(), WriteError>;
    fn describe(&self) -> String;
    fn check(&self, point: &Point) -> Result<(), String>;
    fn read_back(&self) -> Result<&dyn ReadBack, String>;
}

#[async_trait::async_trait]
impl<S: Sink> DynSink for S {
    fn new_batch(&self) -> ErasedBatch {
        ErasedBatch(Box::new(Sink::new_batch(self)))
    }
    fn batching(&self) -> &BatchConfig {
        Sink::batching(self)
    }
    async fn write(&self, batch: &ErasedBatch) -> Result<(), WriteError> {
        Sink::write(self, batch.downcast::<S::Batch>()).await
    }
    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        Sink::delete(self, points).await
    }
    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        Sink::surviving(self, points).await
    }
    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError> {
        Sink::delete_range(self, windows).await
    }
    fn range_deletes_tag_supersets(&self) -> bool {
        Sink::range_deletes_tag_supersets(self)
    }
    async fn prepare(&self) -> Result<(), WriteError> {
        Sink::prepare(self).await
    }
    async fn finish(&self) -> Result<(), WriteError> {
        Sink::finish(self).await
    }
    fn describe(&self) -> String {
        Sink::describe(self)
    }
    fn check(&self, point: &Point) -> Result<(), String> {
        Sink::check(self, point)
    }
    fn read_back(&self) -> Result<&dyn ReadBack, String> {
        Sink::read_back(self)
    }
}

/// Any connector's sink: what [`SinkSpec::build`](super::SinkSpec::build) returns.
pub struct AnySink(Box<dyn DynSink>);

impl AnySink {
    /// Erases `sink`'s batch type.
    pub fn new<S: Sink>(sink: S) -> Self {
        AnySink(Box::new(sink))
    }
}

#[async_trait::async_trait]
impl Sink for AnySink {
    type Batch = ErasedBatch;

    fn new_batch(&self) -> ErasedBatch {
        self.0.new_batch()
    }
    fn batching(&self) -> &BatchConfig {
        self.0.batching()
    }
    async fn write(&self, batch: &ErasedBatch) -> Result<(), WriteError> {
        self.0.write(batch).await
    }
    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        self.0.delete(points).await
    }
    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        self.0.surviving(points).await
    }
    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError> {
        self.0.delete_range(windows).await
    }
    fn range_deletes_tag_supersets(&self) -> bool {
        self.0.range_deletes_tag_supersets()
    }
    async fn prepare(&self) -> Result<(), WriteError> {
        self.0.prepare().await
    }
    async fn finish(&self) -> Result<(), WriteError> {
        self.0.finish().await
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn check(&self, point: &Point) -> Result<(), String> {
        self.0.check(point)
    }
    fn read_back(&self) -> Result<&dyn ReadBack, String> {
        self.0.read_back()
    }
}

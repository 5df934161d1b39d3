//! The Timestream sink: multi-measure records, WriteRecords of at most 100.

use super::client::TimestreamClient;
use super::config::TimestreamSinkConfig;
use super::encoding::{limits, Encoder, TsRecord};
use crate::model::Point;
use crate::sink::{Batch, BatchConfig, Sink, WriteError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Writes points to one Timestream database.
pub struct TimestreamSink {
    config: TimestreamSinkConfig,
    batching: BatchConfig,
    encoder: Arc<Encoder>,
    /// Made by [`Sink::prepare`] (the SDK loads credentials and discovers the endpoint
    /// asynchronously); given up front by tests.
    client: tokio::sync::OnceCell<TimestreamClient>,
}

impl TimestreamSink {
    /// A sink for `config`; it connects in [`Sink::prepare`].
    pub fn new(config: &TimestreamSinkConfig, batching: &BatchConfig) -> Self {
        let encoder = Encoder {
            single_table: config.table.clone(),
            measurement_dimension: config.measurement_dimension.as_str().into(),
            measure_name: config.measure_name.clone(),
            time_unit: config.time_unit,
            retention_ns: config.memory_retention.as_nanos().min(i64::MAX as u128) as i64,
        };
        Self {
            config: config.clone(),
            batching: batching.clone(),
            encoder: Arc::new(encoder),
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// A sink that talks through `sdk`, e.g. a mock client in tests.
    pub fn with_client(
        config: &TimestreamSinkConfig,
        batching: &BatchConfig,
        sdk: aws_sdk_timestreamwrite::Client,
    ) -> Self {
        let sink = Self::new(config, batching);
        let _ = sink.client.set(TimestreamClient::new(sdk, config));
        sink
    }

    async fn client(&self) -> Result<&TimestreamClient, WriteError> {
        self.client
            .get_or_try_init(|| async {
                let sdk = super::client::connect(&self.config, self.batching.timeout)
                    .await
                    .map_err(|message| WriteError::Fatal { message })?;
                Ok(TimestreamClient::new(sdk, &self.config))
            })
            .await
    }
}

/// The records of one `WriteRecords` request: one table, at most 100.
struct Group {
    table: String,
    records: Vec<TsRecord>,
    /// Which push of the batch added each record ([`Batch::pushed_order`]).
    pushed: Vec<usize>,
    outcome: Mutex<Outcome>,
}

/// What became of a group's request so far.
#[derive(Default, Clone)]
struct Outcome {
    /// Timestream acknowledged the request: never send it again.
    written: bool,
    /// Records of the group Timestream refused (index in the group, reason).
    rejected: Vec<(usize, String)>,
}

impl Group {
    fn new(table: String) -> Self {
        Self {
            table,
            records: Vec::with_capacity(limits::MAX_RECORDS_PER_WRITE),
            pushed: Vec::new(),
            outcome: Mutex::default(),
        }
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the group before record `at`; what it learnt goes with its records.
    fn split_at(mut self, at: usize) -> (Group, Group) {
        let outcome = self.outcome().clone();
        let right_records = self.records.split_off(at);
        let right_pushed = self.pushed.split_off(at);
        let part = |rejected: Vec<(usize, String)>| Outcome {
            written: outcome.written,
            rejected,
        };
        let (left, right): (Vec<_>, Vec<_>) =
            outcome.rejected.iter().cloned().partition(|(i, _)| *i < at);
        let right = right.into_iter().map(|(i, r)| (i - at, r)).collect();
        (
            Group {
                table: self.table.clone(),
                records: self.records,
                pushed: self.pushed,
                outcome: Mutex::new(part(left)),
            },
            Group {
                table: self.table,
                records: right_records,
                pushed: right_pushed,
                outcome: Mutex::new(part(right)),
            },
        )
    }
}

/// Records grouped per table and request.
pub struct RecordBatch {
    encoder: Arc<Encoder>,
    groups: Vec<Group>,
    /// The group of each table that still has room.
    open: HashMap<String, usize>,
    len: usize,
    bytes: usize,
}

impl RecordBatch {
    fn new(encoder: Arc<Encoder>) -> Self {
        Self {
            encoder,
            groups: Vec::new(),
            open: HashMap::new(),
            len: 0,
            bytes: 0,
        }
    }

    fn from_groups(encoder: Arc<Encoder>, groups: Vec<Group>) -> Self {
        let len = groups.iter().map(|g| g.records.len()).sum();
        let bytes = groups
            .iter()
            .flat_map(|g| &g.records)
            .map(record_bytes)
            .sum();
        Self {
            encoder,
            groups,
            open: HashMap::new(),
            len,
            bytes,
        }
    }

    /// Tables and record counts of each request, in order (for tests and logs).
    pub fn requests(&self) -> Vec<(&str, usize)> {
        self.groups
            .iter()
            .map(|g| (g.table.as_str(), g.records.len()))
            .collect()
    }
}

/// Roughly what a record weighs in the request's JSON.
fn record_bytes(r: &TsRecord) -> usize {
    let dims: usize = r
        .dimensions
        .iter()
        .map(|(k, v)| k.len() + v.len() + 32)
        .sum();
    let measures: usize = r
        .measures
        .iter()
        .map(|m| m.name.len() + m.value.len() + 40)
        .sum();
    dims + measures + 64
}

impl Batch for RecordBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        let record = self.encoder.encode(
            point,
            super::encoding::now_ns(),
            super::encoding::next_version(),
        )?;
        let table = self.encoder.table(point);
        let index = match self.open.get(table) {
            Some(&i) if self.groups[i].records.len() < limits::MAX_RECORDS_PER_WRITE => i,
            _ => {
                limits::check_resource_name("table", table)?;
                self.groups.push(Group::new(table.to_string()));
                let i = self.groups.len() - 1;
                self.open.insert(table.to_string(), i);
                i
            }
        };
        self.bytes += record_bytes(&record);
        self.groups[index].pushed.push(self.len);
        self.len += 1;
        self.groups[index].records.push(record);
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.len < 2 {
            return None;
        }
        let half = self.len / 2;
        let (mut left, mut right) = (Vec::new(), Vec::new());
        let mut seen = 0;
        for group in self.groups.drain(..) {
            let n = group.records.len();
            if seen >= half {
                right.push(group);
            } else if seen + n <= half {
                left.push(group);
            } else {
                let (a, b) = group.split_at(half - seen);
                left.push(a);
                right.push(b);
            }
            seen += n;
        }
        Some((
            Self::from_groups(self.encoder.clone(), left),
            Self::from_groups(self.encoder, right),
        ))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.records
                    .iter()
                    .map(|r| super::encoding::record_json(&g.table, r))
            })
            .collect()
    }

    /// Records are grouped per table and request: they come group by group.
    fn pushed_order(&self) -> Vec<usize> {
        self.groups
            .iter()
            .flat_map(|g| g.pushed.iter().copied())
            .collect()
    }

    fn clear(&mut self) {
        self.groups.clear();
        self.open.clear();
        self.len = 0;
        self.bytes = 0;
    }
}

#[async_trait::async_trait]
impl Sink for TimestreamSink {
    type Batch = RecordBatch;

    fn new_batch(&self) -> RecordBatch {
        RecordBatch::new(self.encoder.clone())
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn write(&self, batch: &RecordBatch) -> Result<(), WriteError> {
        let client = self.client().await?;
        let mut rejected = Vec::new();
        let mut offset = 0;
        for group in &batch.groups {
            if !group.outcome().written {
                let refused = client
                    .write(&group.table, &group.records, &self.encoder)
                    .await?;
                let mut outcome = group.outcome();
                outcome.written = true;
                outcome.rejected = refused;
            }
            rejected.extend(
                group
                    .outcome()
                    .rejected
                    .iter()
                    .map(|(i, reason)| (offset + i, reason.clone())),
            );
            offset += group.records.len();
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Partial { rejected })
        }
    }

    async fn prepare(&self) -> Result<(), WriteError> {
        let client = self.client().await?;
        client.ensure_database().await?;
        if let (Some(table), true) = (&self.config.table, self.config.create) {
            client.ensure_table(table).await?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let tables = match &c.table {
            Some(t) => format!(
                "table {t} (the measurement as dimension `{}`)",
                c.measurement_dimension
            ),
            None => "a table per measurement".into(),
        };
        format!(
            "Amazon Timestream database {} in {} via {}, {tables}, measure_name {}, time unit {}, memory retention {}h{}",
            c.database,
            c.region.as_deref().unwrap_or("the default region"),
            c.endpoint().unwrap_or("endpoint discovery"),
            c.measure_name,
            c.time_unit.as_str(),
            c.memory_hours(),
            if c.create { ", created if missing" } else { "" }
        )
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Err("verify cannot read Timestream back yet (it needs the Timestream Query API)".into())
    }

    /// Timestream's limits (dimensions, names, sizes, time window), as a batch checks them.
    fn check(&self, point: &Point) -> Result<(), String> {
        self.encoder
            .encode(point, super::encoding::now_ns(), 0)
            .map(|_| ())
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

//! The InfluxDB sink (1.x and 2.x): points become line protocol in one buffer per request.

use super::client::InfluxClient;
use super::encoding::{encode_point, Encoding};
use super::sink_config::InfluxSinkConfig;
use crate::model::Point;
use crate::sink::{Batch, BatchConfig, SeriesWindow, Sink, WriteError};
use bytes::Bytes;
use std::sync::Arc;

/// Writes points to one InfluxDB server.
pub struct InfluxSink {
    pub(super) client: InfluxClient,
    pub(super) encoding: Encoding,
    pub(super) batching: BatchConfig,
    pub(super) create_database: bool,
    pub(super) target: String,
    /// Measurements the job writes (the verify job reads them back).
    pub(super) measurements: Vec<String>,
    /// Every tag key of each measurement, sorted (CDC deletes name them all).
    pub(super) tag_keys: std::collections::BTreeMap<String, Vec<String>>,
}

impl InfluxSink {
    /// A sink for `config`.
    pub fn new(
        config: &InfluxSinkConfig,
        batching: &BatchConfig,
        measurements: Vec<String>,
    ) -> Result<Self, String> {
        let target = match config.version {
            1 => format!(
                "InfluxDB 1.x at {}, database {}, precision {}",
                config.url,
                config.database.as_deref().unwrap_or_default(),
                config.precision.as_str()
            ),
            _ => format!(
                "InfluxDB 2.x at {}, org {}, bucket {}, precision {}",
                config.url,
                config.org.as_deref().unwrap_or_default(),
                config.bucket.as_deref().unwrap_or_default(),
                config.precision.as_str()
            ),
        };
        Ok(Self {
            client: InfluxClient::new(config, batching.timeout)?,
            encoding: Encoding {
                precision: config.precision,
                unsigned: config.version == 2,
            },
            batching: batching.clone(),
            create_database: config.create_database && config.version == 1,
            target,
            measurements,
            tag_keys: Default::default(),
        })
    }

    /// Tells the sink every tag key of each measurement, so a delete touches exactly one
    /// series.
    pub fn with_tag_keys(
        mut self,
        tag_keys: std::collections::BTreeMap<String, Vec<String>>,
    ) -> Self {
        self.tag_keys = tag_keys;
        self
    }

    /// `tags` with every other tag key the job writes to `measurement` as `""`, sorted: a
    /// delete naming them all touches exactly that series, not one with more tags.
    fn every_tag<'a>(
        &'a self,
        measurement: &str,
        tags: &'a [(impl AsRef<str>, String)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect();
        for k in self.tag_keys.get(measurement).into_iter().flatten() {
            if !all.iter().any(|(t, _)| t == k) {
                all.push((k.as_str(), ""));
            }
        }
        all.sort_unstable();
        all
    }
}

/// Lines of line protocol, one request body.
///
/// The body is shared with the HTTP request rather than copied into it; once the request
/// is done the batch is the only owner again, and the buffer is reused for the next one.
pub struct LineBatch {
    encoding: Encoding,
    body: Arc<Vec<u8>>,
    /// Offset just past each line's newline.
    ends: Vec<usize>,
}

/// A request body borrowed from a [`LineBatch`] without copying.
struct SharedBody(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl LineBatch {
    fn body_mut(&mut self) -> &mut Vec<u8> {
        // Unique except while a request is out, when nothing is pushed or cut.
        Arc::make_mut(&mut self.body)
    }
}

impl Batch for LineBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        let encoding = self.encoding;
        let body = self.body_mut();
        encode_point(body, point, encoding)?;
        let end = body.len();
        self.ends.push(end);
        Ok(())
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.ends.len() < 2 {
            return None;
        }
        let half = self.ends.len() / 2;
        let cut = self.ends[half - 1];
        let right = LineBatch {
            encoding: self.encoding,
            body: Arc::new(self.body[cut..].to_vec()),
            ends: self.ends[half..].iter().map(|e| e - cut).collect(),
        };
        self.body_mut().truncate(cut);
        self.ends.truncate(half);
        Some((self, right))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let line = String::from_utf8_lossy(&self.body[start..end - 1]).into_owned();
                start = end;
                serde_json::Value::String(line)
            })
            .collect()
    }

    fn clear(&mut self) {
        self.body_mut().clear();
        self.ends.clear();
    }
}

#[async_trait::async_trait]
impl Sink for InfluxSink {
    type Batch = LineBatch;

    fn new_batch(&self) -> LineBatch {
        LineBatch {
            encoding: self.encoding,
            body: Arc::new(Vec::with_capacity(
                self.batching.batch_size.min(100_000) * 96,
            )),
            ends: Vec::with_capacity(self.batching.batch_size.min(100_000)),
        }
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn write(&self, batch: &LineBatch) -> Result<(), WriteError> {
        self.client
            .write(Bytes::from_owner(SharedBody(batch.body.clone())))
            .await
    }

    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        let keys: Vec<super::client::DeleteKey<'_>> = points
            .iter()
            .map(|p| super::client::DeleteKey {
                measurement: &p.measurement,
                tags: self.every_tag(&p.measurement, &p.tags),
                time: p.time,
            })
            .collect();
        // Deletes are heavy on InfluxDB: a few hundred statements per request at most.
        for chunk in keys.chunks(200) {
            self.client.delete(chunk).await?;
        }
        Ok(())
    }

    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        let mut by_measurement: std::collections::BTreeMap<&str, Vec<&Point>> = Default::default();
        for p in points {
            by_measurement.entry(&p.measurement).or_default().push(p);
        }
        let mut surviving = Vec::new();
        for (measurement, points) in by_measurement {
            // A few hundred statements (1.x) or exact times (2.x) per request at most.
            for chunk in points.chunks(200) {
                let found = match &self.client {
                    InfluxClient::V1 { .. } => {
                        let keys: Vec<(super::client::DeleteKey<'_>, Vec<&str>)> = chunk
                            .iter()
                            .map(|p| {
                                let key = super::client::DeleteKey {
                                    measurement,
                                    tags: self.every_tag(measurement, &p.tags),
                                    time: p.time,
                                };
                                (key, p.fields.iter().map(|(k, _)| k.as_str()).collect())
                            })
                            .collect();
                        self.client.existing(&keys).await?
                    }
                    InfluxClient::V2 { client, bucket, .. } => {
                        super::read::FluxReader { client, bucket }
                            .existing(measurement, chunk)
                            .await?
                    }
                };
                surviving.extend(
                    chunk
                        .iter()
                        .zip(found)
                        .filter(|(_, found)| *found)
                        .map(|(p, _)| (*p).clone()),
                );
            }
        }
        Ok(surviving)
    }

    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError> {
        let keys: Vec<super::client::RangeKey<'_>> = windows
            .iter()
            .map(|w| super::client::RangeKey {
                measurement: &w.measurement,
                tags: self.every_tag(&w.measurement, &w.tags),
                start: w.start,
                end: w.end,
            })
            .collect();
        // A range delete is heavier than a point's: fewer statements per request.
        for chunk in keys.chunks(50) {
            self.client.delete_ranges(chunk).await?;
        }
        Ok(())
    }

    fn range_deletes_tag_supersets(&self) -> bool {
        matches!(self.client, InfluxClient::V2 { .. })
    }

    async fn prepare(&self) -> Result<(), WriteError> {
        if self.create_database {
            self.client.create_database().await?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::TimeUnit;
    use crate::model::{Name, Value};

    #[test]
    fn a_batch_splits_into_halves_at_line_boundaries() {
        let mut b = LineBatch {
            encoding: Encoding {
                precision: TimeUnit::Nanos,
                unsigned: false,
            },
            body: Arc::new(Vec::new()),
            ends: Vec::new(),
        };
        for t in 0..5 {
            let p = Point {
                measurement: Name::from("m"),
                tags: vec![],
                fields: vec![(Name::from("f"), Value::Int(t))],
                time: t,
                device_hash: 0,
            };
            b.push(&p).unwrap();
        }
        let (left, right) = b.split().unwrap();
        assert_eq!(left.records(), vec!["m f=0i 0", "m f=1i 1"]);
        assert_eq!(right.records(), vec!["m f=2i 2", "m f=3i 3", "m f=4i 4"]);
        assert_eq!(
            right.body.as_slice(),
            &b"m f=2i 2\nm f=3i 3\nm f=4i 4\n"[..]
        );
        let (one, _) = left.split().unwrap();
        assert!(one.split().is_none());
    }
}

//! The InfluxDB sink (1.x and 2.x): points become line protocol in one buffer per request.

use super::client::InfluxClient;
use super::encoding::Encoding;
use super::sink_config::InfluxSinkConfig;
use crate::model::Point;
use crate::sink::line_protocol::LineBatch;
use crate::sink::{BatchConfig, SeriesWindow, Sink, WriteError};
use bytes::Bytes;

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
    /// How large the request bodies grow: new batches start that large.
    pub(super) body_size: crate::sink::line_protocol::BodySize,
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
            body_size: Default::default(),
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
        tags: &'a [(impl AsRef<str>, impl AsRef<str>)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        for k in self.tag_keys.get(measurement).into_iter().flatten() {
            if !all.iter().any(|(t, _)| t == k) {
                all.push((k.as_str(), ""));
            }
        }
        all.sort_unstable();
        all
    }
}

#[async_trait::async_trait]
impl Sink for InfluxSink {
    type Batch = LineBatch;

    fn new_batch(&self) -> LineBatch {
        let points = self.batching.batch_size;
        LineBatch::sized(self.encoding, points, self.body_size.room(points))
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn write(&self, batch: &LineBatch) -> Result<(), WriteError> {
        self.body_size.saw(batch.body().len());
        self.client
            .write(Bytes::from_owner(batch.shared_body()))
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

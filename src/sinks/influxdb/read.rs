//! Reading InfluxDB 1.x back for the verify job: the field types of each measurement
//! (`SHOW FIELD KEYS`, so an integer stays an integer), then every point
//! (`SELECT * ... GROUP BY *`), streamed with `chunked=true` and summarised chunk by chunk,
//! so memory holds summaries, not points.

use super::client::InfluxClient;
use super::InfluxSink;
use crate::model::{format_time, Value};
use crate::verify::{series_key, Canonical, Summaries};
use std::collections::HashMap;

/// A source value as InfluxDB stores it (1.x has no unsigned integers; DECIMAL is a float).
pub fn canonical(value: &Value) -> Canonical {
    match value {
        Value::Int(i) => Canonical::Int(*i),
        Value::UInt(u) => Canonical::Int(*u as i64),
        Value::Float(f) => Canonical::Float(*f),
        Value::Decimal(d) => Canonical::Float(d.parse().unwrap_or(f64::NAN)),
        Value::Bool(b) => Canonical::Bool(*b),
        Value::String(s) => Canonical::Text(s.clone()),
        Value::Time(ns) => Canonical::Text(format_time(*ns)),
    }
}

/// A JSON value of a field of `field_type` (`float`, `integer`, `boolean`, `string`).
fn from_json(value: &serde_json::Value, field_type: &str) -> Option<Canonical> {
    Some(match field_type {
        "float" => Canonical::Float(value.as_f64()?),
        "integer" | "unsigned" => Canonical::Int(value.as_i64()?),
        "boolean" => Canonical::Bool(value.as_bool()?),
        _ => Canonical::Text(value.as_str()?.to_string()),
    })
}

impl InfluxClient {
    /// Runs an InfluxQL query, passing each JSON chunk of the answer to `each`.
    async fn query_chunked(
        &self,
        q: &str,
        mut each: impl FnMut(serde_json::Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let InfluxClient::V1 { database, .. } = self else {
            return Err("verifying an InfluxDB 2 target is not available yet; verify against its 1.x compatibility API".into());
        };
        let params = [
            ("db", database.as_str()),
            ("q", q),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", "10000"),
        ];
        let request = self.query(&params).ok_or("not an InfluxDB 1.x target")?;
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("querying InfluxDB: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("querying InfluxDB: HTTP {}", response.status()));
        }
        let mut pending = Vec::new();
        while let Some(bytes) = response
            .chunk()
            .await
            .map_err(|e| format!("reading InfluxDB's answer: {e}"))?
        {
            pending.extend_from_slice(&bytes);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let json: serde_json::Value = serde_json::from_slice(&line)
                    .map_err(|e| format!("InfluxDB's answer is not JSON: {e}"))?;
                if let Some(error) = json["results"][0]
                    .get("error")
                    .or_else(|| json.get("error"))
                {
                    return Err(format!("InfluxDB: {error}"));
                }
                each(json)?;
            }
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            let json: serde_json::Value = serde_json::from_slice(&pending)
                .map_err(|e| format!("InfluxDB's answer is not JSON: {e}"))?;
            each(json)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::sinks::Verify for InfluxSink {
    fn canonical(&self, _field: &str, value: &Value) -> Canonical {
        canonical(value)
    }

    async fn target_summaries(&self, bucket_ns: i64) -> Result<Summaries, String> {
        let mut summaries = Summaries::new(bucket_ns);
        for measurement in &self.measurements {
            let quoted = format!(
                "\"{}\"",
                measurement.replace('\\', "\\\\").replace('"', "\\\"")
            );
            let mut types: HashMap<String, String> = HashMap::new();
            self.client
                .query_chunked(&format!("SHOW FIELD KEYS FROM {quoted}"), |json| {
                    for series in json["results"][0]["series"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        for row in series["values"].as_array().into_iter().flatten() {
                            if let (Some(k), Some(t)) = (row[0].as_str(), row[1].as_str()) {
                                types.insert(k.to_string(), t.to_string());
                            }
                        }
                    }
                    Ok(())
                })
                .await?;
            self.client
                .query_chunked(&format!("SELECT * FROM {quoted} GROUP BY *"), |json| {
                    for series in json["results"][0]["series"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let tags: Vec<(String, String)> = series["tags"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect();
                        let key = series_key(
                            measurement,
                            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        );
                        let columns: Vec<&str> = series["columns"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c.as_str())
                            .collect();
                        for row in series["values"].as_array().into_iter().flatten() {
                            let Some(values) = row.as_array() else {
                                continue;
                            };
                            let Some(time) = values.first().and_then(|t| t.as_i64()) else {
                                continue;
                            };
                            let fields = columns.iter().zip(values).skip(1).filter_map(|(c, v)| {
                                let t = types.get(*c)?;
                                from_json(v, t).map(|canonical| (*c, canonical))
                            });
                            summaries.add(&key, time, fields);
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(summaries)
    }
}

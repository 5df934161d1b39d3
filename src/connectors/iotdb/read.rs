//! Reading IoTDB back for the verify job: one `SELECT * FROM <db>.** ALIGN BY DEVICE` per
//! database (one query, not one per device: each call of the client costs a round trip),
//! fetched in pages by the client and summarised as the rows stream in.

use super::{encoding, path, IotdbSink};
use crate::model::Value;
use crate::verify::{series_key, Canonical, Summaries};
use iotdb::client::{Session, Value as Iot};

/// An IoTDB value in the verify job's canonical form.
pub fn canonical(value: &Iot) -> Option<Canonical> {
    Some(match value {
        Iot::Bool(b) => Canonical::Bool(*b),
        Iot::Int32(i) => Canonical::Int(*i as i64),
        Iot::Int64(i) => Canonical::Int(*i),
        Iot::Float(f) => Canonical::Float(*f as f64),
        Iot::Double(f) => Canonical::Float(*f),
        Iot::Text(s) => Canonical::Text(s.clone()),
        Iot::Null => return None,
    })
}

#[async_trait::async_trait]
impl crate::sink::ReadBack for IotdbSink {
    fn canonical(&self, field: &str, value: &Value) -> Canonical {
        let converted = self
            .schema
            .types
            .get(field)
            .and_then(|t| encoding::convert(value, t).ok())
            .and_then(|v| canonical(&v));
        // A value the sink would refuse has no stored form: it cannot match anything.
        converted.unwrap_or_else(|| Canonical::Text(format!("unwritable: {value}")))
    }

    fn field_name<'a>(&self, field: &'a str) -> std::borrow::Cow<'a, str> {
        path::quote_node(field)
    }

    async fn target_summaries(&self, bucket_ns: i64) -> Result<Summaries, String> {
        let databases = self.databases.clone();
        let unit = self.schema.unit;
        self.pool
            .run(move |connection| {
                let mut summaries = Summaries::new(bucket_ns);
                for db in &databases {
                    let statement = format!("SELECT * FROM {db}.** ALIGN BY DEVICE");
                    connection.call(|s| {
                        let rows = s.execute_query_statement(&statement, None)?;
                        let names = rows.get_column_names();
                        let device_at = names
                            .iter()
                            .position(|n| n == "Device")
                            .ok_or("no Device column in an ALIGN BY DEVICE answer")?;
                        for row in rows {
                            // The client puts the time among the values for some answers.
                            let offset = names.len() - row.values.len();
                            let value =
                                |i: usize| i.checked_sub(offset).and_then(|i| row.values.get(i));
                            let Some(Iot::Text(device)) = value(device_at) else {
                                continue;
                            };
                            let fields = (device_at + 1..names.len()).filter_map(|i| {
                                value(i).and_then(canonical).map(|c| (names[i].as_str(), c))
                            });
                            // The device path as the source side names it.
                            let series = series_key(device, std::iter::empty());
                            summaries.add(&series, row.timestamp * unit, fields);
                        }
                        Ok(())
                    })?;
                }
                Ok(summaries)
            })
            .await
            .map_err(|e| format!("reading IoTDB back: {e:?}"))
    }
}

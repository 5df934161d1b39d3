//! Talking to Timestream: the SDK client (rustls with ring, credentials from the standard
//! AWS chain), `WriteRecords` with its errors classified, and databases and tables
//! created on demand.
//!
//! Endpoint discovery: Timestream's API asks clients to find their ingest endpoint with
//! `DescribeEndpoints`, and the SDK does so only when asked
//! (`with_endpoint_discovery_enabled`). tsmig asks only when no `endpoint:` is configured;
//! with one, every request goes to that URL and nowhere else (a stand-in's DescribeEndpoints
//! names the real AWS host, which must never be contacted). Proxies from `HTTPS_PROXY` /
//! `HTTP_PROXY` / `NO_PROXY` are honoured, as the AWS CLI does.
//!
//! Errors: throttling, internal errors, an outdated discovered endpoint, timeouts and
//! broken connections are transient (retried by [`deliver`](crate::sink::deliver::deliver));
//! `RejectedRecords` names the refused records, which are dead-lettered alone; a
//! ValidationException refuses the request (the batch is bisected until the bad record
//! stands alone); access denied and anything creating cannot fix fail the job. The SDK's
//! own retries are off so that one policy decides.

use super::config::TimestreamSinkConfig;
use super::encoding::{Encoder, TsRecord};
use crate::sink::WriteError;
use aws_sdk_timestreamwrite::config::http::HttpResponse;
use aws_sdk_timestreamwrite::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_timestreamwrite::types::{
    Dimension, MeasureValue, MeasureValueType, Record, RetentionProperties, TimeUnit,
};
use aws_sdk_timestreamwrite::Client;
use std::collections::HashSet;
use std::time::Duration;

/// The SDK client, built as the job file says.
pub async fn connect(config: &TimestreamSinkConfig, timeout: Duration) -> Result<Client, String> {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::{BehaviorVersion, Region};

    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err("no AWS region: set sink.region or AWS_REGION".into());
    }
    let builder = aws_sdk_timestreamwrite::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .build(),
        );
    match config.endpoint() {
        Some(url) => Ok(Client::from_conf(builder.endpoint_url(url).build())),
        None => {
            let (client, reload) = Client::from_conf(builder.build())
                .with_endpoint_discovery_enabled()
                .await
                .map_err(|e| {
                    format!(
                        "Timestream endpoint discovery failed: {}",
                        aws_sdk_timestreamwrite::error::DisplayErrorContext(e.as_ref())
                    )
                })?;
            // Refreshes the discovered endpoint before it expires; ends with the client.
            tokio::spawn(reload.reload_task());
            Ok(client)
        }
    }
}

/// HTTPS with rustls and ring (no aws-lc-rs to build), plain HTTP for local endpoints,
/// proxies from the environment.
fn http_client() -> aws_sdk_timestreamwrite::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{proxy::ProxyConfig, Builder, Connector};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = Connector::builder().proxy_config(ProxyConfig::from_env());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build()
    })
}

/// One database of one account: writes, and creates what is missing.
pub struct TimestreamClient {
    sdk: Client,
    database: String,
    create: bool,
    memory_hours: i64,
    magnetic_days: i64,
    common_attributes: bool,
    /// Tables this process created or found, so concurrent writes that all miss a new table
    /// create it once (a stand-in that wipes a re-created table loses nothing).
    tables: tokio::sync::Mutex<HashSet<String>>,
}

impl TimestreamClient {
    /// A client for `config`'s database over `sdk`.
    pub fn new(sdk: Client, config: &TimestreamSinkConfig) -> Self {
        Self {
            sdk,
            database: config.database.clone(),
            create: config.create,
            memory_hours: config.memory_hours(),
            magnetic_days: config.magnetic_days(),
            common_attributes: config.common_attributes,
            tables: Default::default(),
        }
    }

    /// Makes sure the database exists: created if missing and allowed, else an error.
    pub async fn ensure_database(&self) -> Result<(), WriteError> {
        match self
            .sdk
            .describe_database()
            .database_name(&self.database)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") && self.create => {}
            Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => {
                return Err(WriteError::Fatal {
                    message: format!(
                        "Timestream database `{}` does not exist (and sink.create is false)",
                        self.database
                    ),
                })
            }
            Err(e) => return Err(classify("DescribeDatabase", e)),
        }
        tracing::info!(database = %self.database, "creating Timestream database");
        match self
            .sdk
            .create_database()
            .database_name(&self.database)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Another writer created it meanwhile: what we wanted.
            Err(e) if code(&e).as_deref() == Some("ConflictException") => Ok(()),
            Err(e) => Err(classify("CreateDatabase", e)),
        }
    }

    /// Makes sure `table` exists: created (with the configured retention) if missing.
    pub async fn ensure_table(&self, table: &str) -> Result<(), WriteError> {
        let mut known = self.tables.lock().await;
        if known.contains(table) {
            return Ok(());
        }
        match self
            .sdk
            .describe_table()
            .database_name(&self.database)
            .table_name(table)
            .send()
            .await
        {
            Ok(_) => {
                known.insert(table.to_string());
                return Ok(());
            }
            Err(e) if code(&e).as_deref() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(classify("DescribeTable", e)),
        }
        tracing::info!(database = %self.database, table, "creating Timestream table");
        let retention = RetentionProperties::builder()
            .memory_store_retention_period_in_hours(self.memory_hours)
            .magnetic_store_retention_period_in_days(self.magnetic_days)
            .build()
            .map_err(|e| fatal(format!("retention properties: {e}")))?;
        match self
            .sdk
            .create_table()
            .database_name(&self.database)
            .table_name(table)
            .retention_properties(retention)
            .send()
            .await
        {
            Ok(_) => {}
            // Another writer created it meanwhile: what we wanted.
            Err(e) if code(&e).as_deref() == Some("ConflictException") => {}
            Err(e) => return Err(classify("CreateTable", e)),
        }
        known.insert(table.to_string());
        Ok(())
    }

    /// Writes `records` (at most 100) to `table`. `Ok` holds the records Timestream refused
    /// (index into `records`, reason); the others are written. A missing table is created
    /// (when allowed) and the write tried once more.
    pub async fn write(
        &self,
        table: &str,
        records: &[TsRecord],
        encoder: &Encoder,
    ) -> Result<Vec<(usize, String)>, WriteError> {
        let (common, sdk_records) = request(records, encoder, self.common_attributes)?;
        let mut created = false;
        loop {
            let result = self
                .sdk
                .write_records()
                .database_name(&self.database)
                .table_name(table)
                .common_attributes(common.clone())
                .set_records(Some(sdk_records.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Vec::new()),
                Err(err) => err,
            };
            if let Some(aws_sdk_timestreamwrite::operation::write_records::WriteRecordsError::RejectedRecordsException(e)) = err.as_service_error() {
                return Ok(e
                    .rejected_records()
                    .iter()
                    .map(|r| {
                        let mut reason = format!(
                            "Timestream rejected record {} of the request: {}",
                            r.record_index(),
                            r.reason().unwrap_or("no reason given")
                        );
                        if let Some(v) = r.existing_version() {
                            reason.push_str(&format!(" (existing version {v})"));
                        }
                        (r.record_index().max(0) as usize, reason)
                    })
                    .collect());
            }
            if code(&err).as_deref() == Some("ResourceNotFoundException") && self.create && !created
            {
                self.tables.lock().await.remove(table);
                self.ensure_table(table).await?;
                created = true;
                continue;
            }
            return Err(classify("WriteRecords", err));
        }
    }
}

/// The request for `records`: what they share in `CommonAttributes` (when `hoist`), the
/// rest in each record.
pub fn request(
    records: &[TsRecord],
    encoder: &Encoder,
    hoist: bool,
) -> Result<(Record, Vec<Record>), WriteError> {
    let shared: Vec<&(crate::model::Name, crate::model::Text)> = match records.split_first() {
        Some((first, rest)) if hoist => first
            .dimensions
            .iter()
            .filter(|d| rest.iter().all(|r| r.dimensions.contains(d)))
            .collect(),
        _ => Vec::new(),
    };
    let dimension = |(name, value): &(crate::model::Name, crate::model::Text)| {
        Dimension::builder()
            .name(name.as_str())
            .value(value.as_str())
            .build()
            .map_err(|e| fatal(format!("dimension: {e}")))
    };
    let time_unit = match encoder.time_unit {
        crate::job::TimeUnit::Seconds => TimeUnit::Seconds,
        crate::job::TimeUnit::Millis => TimeUnit::Milliseconds,
        crate::job::TimeUnit::Micros => TimeUnit::Microseconds,
        crate::job::TimeUnit::Nanos => TimeUnit::Nanoseconds,
    };
    let mut common = Record::builder();
    if hoist {
        common = common
            .measure_name(&encoder.measure_name)
            .measure_value_type(MeasureValueType::Multi)
            .time_unit(time_unit.clone());
        for d in &shared {
            common = common.dimensions(dimension(d)?);
        }
    }
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let mut b = Record::builder()
            .time(itoa::Buffer::new().format(r.time))
            .version(r.version);
        if !hoist {
            b = b
                .measure_name(&encoder.measure_name)
                .measure_value_type(MeasureValueType::Multi)
                .time_unit(time_unit.clone());
        }
        for d in r.dimensions.iter().filter(|d| !shared.contains(d)) {
            b = b.dimensions(dimension(d)?);
        }
        for m in &r.measures {
            b = b.measure_values(
                MeasureValue::builder()
                    .name(m.name.as_str())
                    .value(&m.value)
                    .r#type(MeasureValueType::from(m.kind.as_str()))
                    .build()
                    .map_err(|e| fatal(format!("measure value: {e}")))?,
            );
        }
        out.push(b.build());
    }
    Ok((common.build(), out))
}

fn fatal(message: String) -> WriteError {
    WriteError::Fatal { message }
}

/// The service's error code, if the service answered. Errors that carry no code metadata
/// (built by hand, as a mock does) are named by their variant, which the SDK names after
/// the code.
fn code<E: ProvideErrorMetadata + std::fmt::Debug, R>(err: &SdkError<E, R>) -> Option<String> {
    let e = err.as_service_error()?;
    match e.code() {
        Some(code) => Some(code.to_string()),
        None => {
            let debug = format!("{e:?}");
            let variant = debug.split(['(', ' ', '{']).next().unwrap_or_default();
            (!variant.is_empty()).then(|| variant.to_string())
        }
    }
}

/// What a failed call means for the batch.
fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> WriteError
where
    E: ProvideErrorMetadata + std::error::Error + std::fmt::Debug + Send + Sync + 'static,
{
    let message = format!(
        "Timestream {operation}: {}",
        aws_sdk_timestreamwrite::error::DisplayErrorContext(&err)
    );
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match code(&err).as_deref() {
                Some("ThrottlingException")
                | Some("InternalServerException")
                | Some("InvalidEndpointException")
                | Some("ServiceUnavailable") => WriteError::Transient {
                    message,
                    retry_after: None,
                },
                Some("ValidationException") => WriteError::Rejected { message },
                Some("AccessDeniedException")
                | Some("ResourceNotFoundException")
                | Some("ServiceQuotaExceededException") => WriteError::Fatal { message },
                _ if status == 429 || status >= 500 => WriteError::Transient {
                    message,
                    retry_after: None,
                },
                _ => WriteError::Fatal { message },
            }
        }
        SdkError::ConstructionFailure(_) => WriteError::Fatal { message },
        // Timeouts, connections that failed or broke, answers that could not be read.
        _ => WriteError::Transient {
            message,
            retry_after: None,
        },
    }
}

//! The Apache IoTDB sink: points become tablets, one per device and set of measurements,
//! written with `insertTablets` on a pool of sessions.
//!
//! A point's measurement is its device path (the mapping's `path:` rendered with the row's
//! values, nodes quoted where IoTDB needs it); its fields are the device's measurements.
//! Databases are created before the first write, series the first time tsmig writes them
//! (with the declared or inferred type, the configured encoding and compressor); a series
//! that exists with another type fails the job with its path. Tablets cannot carry NULLs
//! (IoTDB's client refuses them), so rows with different sets of non-NULL fields go to
//! different tablets of the same device.

pub mod client;
pub mod config;
pub mod encoding;
pub mod path;
pub mod read;
pub mod sink;

pub use sink::IotdbSink;

/// `type: iotdb`, a sink only.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "iotdb",
    source: None,
    sink: Some(|job| {
        let (config, batching) = crate::sink::parse_section::<config::IotdbSinkConfig>(job)?;
        Ok(Box::new(config::IotdbSinkSpec { config, batching }))
    }),
};

//! Points → InfluxDB line protocol: the request bodies of the InfluxDB sink. The encoder is
//! a format shared with other sinks (the file sink writes it too), so it lives with them,
//! in [`crate::sink::line_protocol`].

pub use crate::sink::line_protocol::{encode_point, write_float, Encoding};

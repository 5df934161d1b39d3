//! Thrift on the wire, as IoTDB's client service speaks it: framed transport (a 4-byte
//! big-endian length before every message), and inside each frame a message in the
//! binary protocol (strict, as iotdb-client-rs writes it by default) or the compact
//! protocol (iotdb-client-rs with `enable_compression`). The codec is told apart by the
//! first byte of each frame and the answer goes back in the same codec.
//!
//! Requests are read generically into [`Struct`]s keyed by field id, so the service
//! decodes each IoTDB request by the ids of client.thrift (see client_subset.thrift)
//! and unknown fields are kept rather than fatal, as Thrift's own generated code does.

use std::io::{self, Read};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier, TMessageIdentifier,
    TMessageType, TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};

/// A sanity bound on one frame; IoTDB's own default limit (thrift_max_frame_size) is
/// larger, but no test sends anywhere near this.
const MAX_FRAME_BYTES: usize = 256 << 20;

/// `TApplicationException.type` values the stand-in sends.
pub(crate) const APPLICATION_ERROR_UNKNOWN_METHOD: i32 = 1;
pub(crate) const APPLICATION_ERROR_PROTOCOL: i32 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Binary protocol with the version word in the message header.
    StrictBinary,
    /// Old-style binary protocol: the header starts with the method name's length.
    LaxBinary,
    Compact,
}

/// One Thrift value, as read from or written to the wire.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    I8(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    /// `string` and `binary` alike: the wire does not tell them apart.
    Binary(Vec<u8>),
    Struct(Struct),
    List(TType, Vec<Value>),
    Set(TType, Vec<Value>),
    Map(TType, TType, Vec<(Value, Value)>),
}

/// A Thrift struct as (field id, value) pairs in wire order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Struct {
    pub fields: Vec<(i16, Value)>,
}

/// One incoming call: its method, sequence number, codec and arguments (the
/// `<method>_args` struct), or why the arguments could not be read.
pub(crate) struct Call {
    pub codec: Codec,
    pub method: String,
    pub seq: i32,
    pub args: Result<Struct, String>,
}

/// Reads one frame; `None` when the client hung up between frames.
pub(crate) fn read_frame(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = i32::from_be_bytes(length);
    if length < 0 || length as usize > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {length} is not one the stand-in accepts"),
        ));
    }
    let mut frame = vec![0u8; length as usize];
    input.read_exact(&mut frame)?;
    Ok(Some(frame))
}

/// Decodes the message in one frame. An error here means not even the header could be
/// read, so there is no method or sequence number to answer to.
pub(crate) fn decode_call(frame: &[u8]) -> Result<Call, String> {
    let codec = match frame.first() {
        None => return Err("empty frame".into()),
        Some(0x82) => Codec::Compact,
        Some(b) if b & 0x80 != 0 => Codec::StrictBinary,
        Some(_) => Codec::LaxBinary,
    };
    let mut input: &[u8] = frame;
    let mut protocol: Box<dyn TInputProtocol + '_> = match codec {
        Codec::Compact => Box::new(TCompactInputProtocol::new(&mut input)),
        Codec::StrictBinary => Box::new(TBinaryInputProtocol::new(&mut input, true)),
        Codec::LaxBinary => Box::new(TBinaryInputProtocol::new(&mut input, false)),
    };
    let header = protocol
        .read_message_begin()
        .map_err(|e| format!("unreadable message header: {e}"))?;
    if header.message_type != TMessageType::Call {
        return Err(format!(
            "expected a call, got a {} message",
            header.message_type
        ));
    }
    let args = read_struct(protocol.as_mut())
        .and_then(|args| protocol.read_message_end().map(|()| args))
        .map_err(|e| format!("unreadable arguments of {}: {e}", header.name));
    Ok(Call {
        codec,
        method: header.name,
        seq: header.sequence_number,
        args,
    })
}

/// A framed reply whose `<method>_result` struct holds `success` at field 0.
pub(crate) fn encode_reply(codec: Codec, method: &str, seq: i32, success: Value) -> Vec<u8> {
    let header = TMessageIdentifier::new(method, TMessageType::Reply, seq);
    encode(codec, &header, &Struct::new().with(0, success))
}

/// A framed `TApplicationException`: what a Thrift server sends when it cannot answer
/// with the method's own result type.
pub(crate) fn encode_exception(
    codec: Codec,
    method: &str,
    seq: i32,
    kind: i32,
    message: &str,
) -> Vec<u8> {
    let header = TMessageIdentifier::new(method, TMessageType::Exception, seq);
    let body = Struct::new()
        .with(1, Value::string(message))
        .with(2, Value::I32(kind));
    encode(codec, &header, &body)
}

fn encode(codec: Codec, header: &TMessageIdentifier, body: &Struct) -> Vec<u8> {
    let mut payload = Vec::new();
    {
        let mut protocol: Box<dyn TOutputProtocol + '_> = match codec {
            Codec::Compact => Box::new(TCompactOutputProtocol::new(&mut payload)),
            Codec::StrictBinary => Box::new(TBinaryOutputProtocol::new(&mut payload, true)),
            Codec::LaxBinary => Box::new(TBinaryOutputProtocol::new(&mut payload, false)),
        };
        let written = protocol
            .write_message_begin(header)
            .and_then(|()| write_struct(protocol.as_mut(), body))
            .and_then(|()| protocol.write_message_end())
            .and_then(|()| protocol.flush());
        written.expect("encoding into memory cannot fail");
    }
    let mut framed = Vec::with_capacity(4 + payload.len());
    framed.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    framed.extend_from_slice(&payload);
    framed
}

fn read_struct(p: &mut dyn TInputProtocol) -> thrift::Result<Struct> {
    p.read_struct_begin()?;
    let mut fields = Vec::new();
    loop {
        let field = p.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        let id = field.id.unwrap_or_default();
        fields.push((id, read_value(p, field.field_type)?));
        p.read_field_end()?;
    }
    p.read_struct_end()?;
    Ok(Struct { fields })
}

fn read_value(p: &mut dyn TInputProtocol, ty: TType) -> thrift::Result<Value> {
    Ok(match ty {
        TType::Bool => Value::Bool(p.read_bool()?),
        TType::I08 => Value::I8(p.read_i8()?),
        TType::I16 => Value::I16(p.read_i16()?),
        TType::I32 => Value::I32(p.read_i32()?),
        TType::I64 => Value::I64(p.read_i64()?),
        TType::Double => Value::Double(p.read_double()?),
        TType::String | TType::Utf7 | TType::Utf8 | TType::Utf16 => Value::Binary(p.read_bytes()?),
        TType::Struct => Value::Struct(read_struct(p)?),
        TType::List => {
            let list = p.read_list_begin()?;
            let items = read_items(p, list.element_type, list.size)?;
            p.read_list_end()?;
            Value::List(list.element_type, items)
        }
        TType::Set => {
            let set = p.read_set_begin()?;
            let items = read_items(p, set.element_type, set.size)?;
            p.read_set_end()?;
            Value::Set(set.element_type, items)
        }
        TType::Map => {
            let map = p.read_map_begin()?;
            let key_type = map.key_type.unwrap_or(TType::Stop);
            let value_type = map.value_type.unwrap_or(TType::Stop);
            let mut entries = Vec::with_capacity(map.size.max(0) as usize);
            for _ in 0..map.size {
                let key = read_value(p, key_type)?;
                entries.push((key, read_value(p, value_type)?));
            }
            p.read_map_end()?;
            Value::Map(key_type, value_type, entries)
        }
        TType::Stop | TType::Void => {
            return Err(thrift::Error::Protocol(thrift::ProtocolError::new(
                thrift::ProtocolErrorKind::InvalidData,
                format!("a value of type {ty} cannot be read"),
            )))
        }
    })
}

fn read_items(p: &mut dyn TInputProtocol, ty: TType, size: i32) -> thrift::Result<Vec<Value>> {
    let mut items = Vec::with_capacity(size.clamp(0, 1 << 16) as usize);
    for _ in 0..size {
        items.push(read_value(p, ty)?);
    }
    Ok(items)
}

fn write_struct(p: &mut dyn TOutputProtocol, s: &Struct) -> thrift::Result<()> {
    p.write_struct_begin(&TStructIdentifier::new("struct"))?;
    for (id, value) in &s.fields {
        p.write_field_begin(&TFieldIdentifier::new("field", value.ttype(), *id))?;
        write_value(p, value)?;
        p.write_field_end()?;
    }
    p.write_field_stop()?;
    p.write_struct_end()
}

fn write_value(p: &mut dyn TOutputProtocol, value: &Value) -> thrift::Result<()> {
    match value {
        Value::Bool(b) => p.write_bool(*b),
        Value::I8(i) => p.write_i8(*i),
        Value::I16(i) => p.write_i16(*i),
        Value::I32(i) => p.write_i32(*i),
        Value::I64(i) => p.write_i64(*i),
        Value::Double(d) => p.write_double(*d),
        Value::Binary(b) => p.write_bytes(b),
        Value::Struct(s) => write_struct(p, s),
        Value::List(ty, items) => {
            p.write_list_begin(&TListIdentifier::new(*ty, items.len() as i32))?;
            for item in items {
                write_value(p, item)?;
            }
            p.write_list_end()
        }
        Value::Set(ty, items) => {
            p.write_set_begin(&TSetIdentifier::new(*ty, items.len() as i32))?;
            for item in items {
                write_value(p, item)?;
            }
            p.write_set_end()
        }
        Value::Map(key_type, value_type, entries) => {
            p.write_map_begin(&TMapIdentifier::new(
                *key_type,
                *value_type,
                entries.len() as i32,
            ))?;
            for (key, value) in entries {
                write_value(p, key)?;
                write_value(p, value)?;
            }
            p.write_map_end()
        }
    }
}

impl Value {
    pub fn string(s: impl Into<String>) -> Value {
        Value::Binary(s.into().into_bytes())
    }

    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(
            TType::String,
            items.into_iter().map(|s| Value::string(s)).collect(),
        )
    }

    pub fn binaries(items: impl IntoIterator<Item = Vec<u8>>) -> Value {
        Value::List(
            TType::String,
            items.into_iter().map(Value::Binary).collect(),
        )
    }

    fn ttype(&self) -> TType {
        match self {
            Value::Bool(_) => TType::Bool,
            Value::I8(_) => TType::I08,
            Value::I16(_) => TType::I16,
            Value::I32(_) => TType::I32,
            Value::I64(_) => TType::I64,
            Value::Double(_) => TType::Double,
            Value::Binary(_) => TType::String,
            Value::Struct(_) => TType::Struct,
            Value::List(..) => TType::List,
            Value::Set(..) => TType::Set,
            Value::Map(..) => TType::Map,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::I8(_) => "byte",
            Value::I16(_) => "i16",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::Double(_) => "double",
            Value::Binary(_) => "string/binary",
            Value::Struct(_) => "struct",
            Value::List(..) => "list",
            Value::Set(..) => "set",
            Value::Map(..) => "map",
        }
    }

    fn wrong(&self, what: &str, expected: &str) -> String {
        format!("{what}: expected {expected}, got {}", self.kind())
    }

    pub fn as_bool(&self, what: &str) -> Result<bool, String> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => Err(other.wrong(what, "bool")),
        }
    }

    pub fn as_i32(&self, what: &str) -> Result<i32, String> {
        match self {
            Value::I32(i) => Ok(*i),
            other => Err(other.wrong(what, "i32")),
        }
    }

    pub fn as_i64(&self, what: &str) -> Result<i64, String> {
        match self {
            Value::I64(i) => Ok(*i),
            other => Err(other.wrong(what, "i64")),
        }
    }

    pub fn as_bytes(&self, what: &str) -> Result<&[u8], String> {
        match self {
            Value::Binary(b) => Ok(b),
            other => Err(other.wrong(what, "binary")),
        }
    }

    pub fn as_string(&self, what: &str) -> Result<String, String> {
        String::from_utf8(self.as_bytes(what)?.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }

    pub fn as_list(&self, what: &str) -> Result<&[Value], String> {
        match self {
            Value::List(_, items) => Ok(items),
            other => Err(other.wrong(what, "list")),
        }
    }

    pub fn as_struct(&self, what: &str) -> Result<&Struct, String> {
        match self {
            Value::Struct(s) => Ok(s),
            other => Err(other.wrong(what, "struct")),
        }
    }
}

/// Field accessors: `what` names the field (e.g. "TSInsertTabletReq.values") for the
/// error a malformed request gets back.
impl Struct {
    pub fn new() -> Struct {
        Struct::default()
    }

    pub fn with(mut self, id: i16, value: Value) -> Struct {
        self.fields.push((id, value));
        self
    }

    pub fn with_opt(self, id: i16, value: Option<Value>) -> Struct {
        match value {
            Some(value) => self.with(id, value),
            None => self,
        }
    }

    pub fn get(&self, id: i16) -> Option<&Value> {
        self.fields.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    fn need(&self, id: i16, what: &str) -> Result<&Value, String> {
        self.get(id)
            .ok_or_else(|| format!("{what} (field {id}) is required but missing"))
    }

    pub fn strukt(&self, id: i16, what: &str) -> Result<&Struct, String> {
        self.need(id, what)?.as_struct(what)
    }

    pub fn i32(&self, id: i16, what: &str) -> Result<i32, String> {
        self.need(id, what)?.as_i32(what)
    }

    pub fn i64(&self, id: i16, what: &str) -> Result<i64, String> {
        self.need(id, what)?.as_i64(what)
    }

    pub fn string(&self, id: i16, what: &str) -> Result<String, String> {
        self.need(id, what)?.as_string(what)
    }

    pub fn bytes(&self, id: i16, what: &str) -> Result<&[u8], String> {
        self.need(id, what)?.as_bytes(what)
    }

    pub fn opt_bool(&self, id: i16, what: &str) -> Result<Option<bool>, String> {
        self.get(id).map(|v| v.as_bool(what)).transpose()
    }

    pub fn opt_i32(&self, id: i16, what: &str) -> Result<Option<i32>, String> {
        self.get(id).map(|v| v.as_i32(what)).transpose()
    }

    pub fn opt_i64(&self, id: i16, what: &str) -> Result<Option<i64>, String> {
        self.get(id).map(|v| v.as_i64(what)).transpose()
    }

    pub fn opt_string(&self, id: i16, what: &str) -> Result<Option<String>, String> {
        self.get(id).map(|v| v.as_string(what)).transpose()
    }

    pub fn strings(&self, id: i16, what: &str) -> Result<Vec<String>, String> {
        list_of(self.need(id, what)?, what, |v| v.as_string(what))
    }

    pub fn i32s(&self, id: i16, what: &str) -> Result<Vec<i32>, String> {
        list_of(self.need(id, what)?, what, |v| v.as_i32(what))
    }

    pub fn i64s(&self, id: i16, what: &str) -> Result<Vec<i64>, String> {
        list_of(self.need(id, what)?, what, |v| v.as_i64(what))
    }

    pub fn binaries(&self, id: i16, what: &str) -> Result<Vec<&[u8]>, String> {
        list_of(self.need(id, what)?, what, |v| v.as_bytes(what))
    }

    pub fn string_lists(&self, id: i16, what: &str) -> Result<Vec<Vec<String>>, String> {
        list_of(self.need(id, what)?, what, |inner| {
            list_of(inner, what, |v| v.as_string(what))
        })
    }

    pub fn i32_lists(&self, id: i16, what: &str) -> Result<Vec<Vec<i32>>, String> {
        list_of(self.need(id, what)?, what, |inner| {
            list_of(inner, what, |v| v.as_i32(what))
        })
    }
}

fn list_of<'a, T>(
    value: &'a Value,
    what: &str,
    item: impl Fn(&'a Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    value.as_list(what)?.iter().map(item).collect()
}

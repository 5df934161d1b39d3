//! `IClientRPCService` as the stand-in answers it: each request struct is read by the
//! field ids of IoTDB's client.thrift (restated in client_subset.thrift) and answered
//! with the method's own result type. Like IoTDB, a session belongs to its connection:
//! the `sessionId` in requests is not trusted, a connection that has not opened one is
//! answered NOT_LOGIN (802).
//!
//! Methods of the service that the stand-in does not implement are answered, where the
//! result type carries a TSStatus, with 300 "not implemented by the stand-in: <method>",
//! and otherwise with a Thrift application exception saying the same; a method that is
//! not in the service at all gets Thrift's "Invalid method name".

use super::buffers;
use super::path;
use super::protocol::{self, Call, Struct, Value};
use super::sql::{self, QueryResult};
use super::status::{self, Status};
use super::store::{self, Cell, Column, DeviceWrite};
use super::{Shared, StandInDataType, WriteFault};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// TSProtocolVersion.IOTDB_SERVICE_PROTOCOL_V3, the only version IoTDB 1.x accepts.
const PROTOCOL_V3: i32 = 2;

/// Rows per answer when the client names no fetch size (IoTDB's default fetch_size).
const DEFAULT_FETCH_SIZE: usize = 5000;

/// The insert methods: the ones `fail_next` and `hang_up_next` act on.
const INSERT_METHODS: [&str; 8] = [
    "insertRecord",
    "insertStringRecord",
    "insertTablet",
    "insertTablets",
    "insertRecords",
    "insertRecordsOfOneDevice",
    "insertStringRecordsOfOneDevice",
    "insertStringRecords",
];

/// What a method of IClientRPCService returns, so that any of them can be refused
/// with a status in its own result type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultType {
    /// common.TSStatus itself.
    Status,
    /// A struct whose only required field is `1: TSStatus status`.
    StatusStruct,
    OpenSessionResp,
    FetchResultsResp,
    GetTimeZoneResp,
    /// Anything else (i64, ServerProperties, ...): refused with an exception.
    Other,
}

fn result_type(method: &str) -> Option<ResultType> {
    use ResultType::*;
    Some(match method {
        "closeSession"
        | "executeBatchStatement"
        | "cancelOperation"
        | "closeOperation"
        | "setTimeZone"
        | "setStorageGroup"
        | "createTimeseries"
        | "createAlignedTimeseries"
        | "createMultiTimeseries"
        | "deleteTimeseries"
        | "deleteStorageGroups"
        | "insertRecord"
        | "insertStringRecord"
        | "insertTablet"
        | "insertTablets"
        | "insertRecords"
        | "insertRecordsOfOneDevice"
        | "insertStringRecordsOfOneDevice"
        | "insertStringRecords"
        | "testInsertTablet"
        | "testInsertTablets"
        | "testInsertRecord"
        | "testInsertStringRecord"
        | "testInsertRecords"
        | "testInsertRecordsOfOneDevice"
        | "testInsertStringRecords"
        | "deleteData"
        | "createSchemaTemplate"
        | "appendSchemaTemplate"
        | "pruneSchemaTemplate"
        | "setSchemaTemplate"
        | "unsetSchemaTemplate"
        | "dropSchemaTemplate"
        | "createTimeseriesUsingSchemaTemplate"
        | "handshake"
        | "sendPipeData"
        | "sendFile"
        | "testConnectionEmptyRPC" => Status,
        "executeQueryStatementV2"
        | "executeUpdateStatementV2"
        | "executeStatementV2"
        | "executeRawDataQueryV2"
        | "executeLastDataQueryV2"
        | "executeFastLastDataQueryForOnePrefixPath"
        | "executeFastLastDataQueryForOneDeviceV2"
        | "executeAggregationQueryV2"
        | "executeStatement"
        | "executeQueryStatement"
        | "executeUpdateStatement"
        | "executeRawDataQuery"
        | "executeLastDataQuery"
        | "executeAggregationQuery"
        | "fetchMetadata"
        | "pipeTransfer"
        | "getBackupConfiguration" => StatusStruct,
        "openSession" => OpenSessionResp,
        "fetchResults" | "fetchResultsV2" => FetchResultsResp,
        "getTimeZone" => GetTimeZoneResp,
        "requestStatementId"
        | "getProperties"
        | "querySchemaTemplate"
        | "showConfigurationTemplate"
        | "showConfiguration"
        | "pipeSubscribe"
        | "fetchAllConnectionsInfo" => Other,
        _ => return None,
    })
}

/// Per-connection state: the session, if one is open, and its unfinished queries.
#[derive(Default)]
pub(crate) struct Connection {
    session: Option<Session>,
}

struct Session {
    zone_id: String,
    queries: HashMap<i64, QueryResult>,
}

pub(crate) enum Answer {
    Frame(Vec<u8>),
    /// Close the connection without answering.
    HangUp,
}

enum Response {
    Value(Value),
    Exception { kind: i32, message: String },
}

/// Answers one call.
pub(crate) fn answer(shared: &Shared, connection: &mut Connection, call: Call) -> Answer {
    let method = call.method.as_str();
    shared.count_call(method);
    let delay = shared.faults().delay;
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let response = match &call.args {
        Err(message) => Response::Exception {
            kind: protocol::APPLICATION_ERROR_PROTOCOL,
            message: message.clone(),
        },
        Ok(args) => match injected_fault(shared, method) {
            Some(WriteFault::HangUp) => return Answer::HangUp,
            Some(WriteFault::Status(code)) => Response::Value(status_value(&Status::error(
                code,
                format!("injected by the stand-in (fail_next) into {method}"),
            ))),
            None => respond(shared, connection, method, args).unwrap_or_else(|message| {
                Response::Exception {
                    kind: protocol::APPLICATION_ERROR_PROTOCOL,
                    message,
                }
            }),
        },
    };
    Answer::Frame(match response {
        Response::Value(value) => protocol::encode_reply(call.codec, method, call.seq, value),
        Response::Exception { kind, message } => {
            protocol::encode_exception(call.codec, method, call.seq, kind, &message)
        }
    })
}

fn injected_fault(shared: &Shared, method: &str) -> Option<WriteFault> {
    if INSERT_METHODS.contains(&method) {
        shared.take_write_fault()
    } else {
        None
    }
}

/// The method's result carrying only `status` (for refusals).
fn refusal(result_type: ResultType, method: &str, status: Status) -> Response {
    let with_status = || Struct::new().with(1, status_value(&status));
    Response::Value(match result_type {
        ResultType::Status => status_value(&status),
        ResultType::StatusStruct => Value::Struct(with_status()),
        ResultType::OpenSessionResp => {
            Value::Struct(with_status().with(2, Value::I32(PROTOCOL_V3)))
        }
        ResultType::FetchResultsResp => Value::Struct(
            with_status()
                .with(2, Value::Bool(false))
                .with(3, Value::Bool(false)),
        ),
        ResultType::GetTimeZoneResp => Value::Struct(with_status().with(2, Value::string(""))),
        ResultType::Other => {
            return Response::Exception {
                kind: 0,
                message: format!("{method}: {}", status.message.unwrap_or_default()),
            }
        }
    })
}

/// `Err` is a request the stand-in could not read (answered as a protocol error).
fn respond(
    shared: &Shared,
    connection: &mut Connection,
    method: &str,
    args: &Struct,
) -> Result<Response, String> {
    let Some(result_type) = result_type(method) else {
        return Ok(Response::Exception {
            kind: protocol::APPLICATION_ERROR_UNKNOWN_METHOD,
            message: format!("Invalid method name: '{method}'"),
        });
    };
    if method == "openSession" {
        return open_session(shared, connection, args.strukt(1, "openSession.req")?);
    }
    if method.starts_with("testInsert") {
        // IoTDB answers these without writing: they measure the network.
        return Ok(Response::Value(status_value(&Status::ok())));
    }
    let Some(session) = connection.session.as_mut() else {
        let status = Status::error(
            status::NOT_LOGIN,
            "Log in failed. Either you are not authorized or the session has timed out.",
        );
        return Ok(refusal(result_type, method, status));
    };
    let value = match method {
        "closeSession" => {
            connection.session = None;
            status_value(&Status::ok())
        }
        "executeStatement" | "executeUpdateStatement" | "executeQueryStatement" => {
            execute_statement(shared, session, args.strukt(1, "req")?)?
        }
        "executeBatchStatement" => {
            let statements = args
                .strukt(1, "req")?
                .strings(2, "TSExecuteBatchStatementReq.statements")?;
            let mut store = shared.store();
            let failures = statements
                .iter()
                .filter_map(|sql| sql::run(&mut store, sql).err())
                .collect();
            status_value(&Status::multiple(failures))
        }
        "fetchResults" => fetch_results(session, args.strukt(1, "req")?)?,
        "closeOperation" => {
            if let Some(query_id) = args
                .strukt(1, "req")?
                .opt_i64(2, "TSCloseOperationReq.queryId")?
            {
                session.queries.remove(&query_id);
            }
            status_value(&Status::ok())
        }
        "getTimeZone" => Value::Struct(
            Struct::new()
                .with(1, status_value(&Status::ok()))
                .with(2, Value::string(session.zone_id.clone())),
        ),
        "setTimeZone" => {
            session.zone_id = args
                .strukt(1, "req")?
                .string(2, "TSSetTimeZoneReq.timeZone")?;
            status_value(&Status::ok())
        }
        "requestStatementId" => Value::I64(shared.next_statement_id.fetch_add(1, Ordering::SeqCst)),
        "setStorageGroup" => {
            let path = args.string(2, "setStorageGroup.storageGroup")?;
            status_value(&shared.store().create_database(&path))
        }
        "deleteStorageGroups" => {
            let paths = args.strings(2, "deleteStorageGroups.storageGroup")?;
            status_value(&shared.store().delete_databases(&paths))
        }
        "deleteTimeseries" => {
            let paths = args.strings(2, "deleteTimeseries.path")?;
            status_value(&shared.store().delete_timeseries(&paths))
        }
        "createTimeseries" => status_value(&create_timeseries(shared, args.strukt(1, "req")?)?),
        "createAlignedTimeseries" => {
            status_value(&create_aligned_timeseries(shared, args.strukt(1, "req")?)?)
        }
        "createMultiTimeseries" => {
            status_value(&create_multi_timeseries(shared, args.strukt(1, "req")?)?)
        }
        "deleteData" => {
            let req = args.strukt(1, "req")?;
            let paths = req.strings(2, "TSDeleteDataReq.paths")?;
            let start = req.i64(3, "TSDeleteDataReq.startTime")?;
            let end = req.i64(4, "TSDeleteDataReq.endTime")?;
            status_value(&shared.store().delete_data(&paths, start, end))
        }
        _ if INSERT_METHODS.contains(&method) => {
            let status = match device_writes(method, args.strukt(1, "req")?)? {
                Ok(writes) => {
                    let devices = writes.len();
                    let status = shared.store().write(writes);
                    redirected(shared, method, devices, status)
                }
                Err(status) => status,
            };
            status_value(&status)
        }
        _ => {
            return Ok(refusal(
                result_type,
                method,
                Status::not_implemented(method),
            ))
        }
    };
    Ok(Response::Value(value))
}

/// The answer to an insert of `devices` device writes as a DataNode of a cluster gives
/// it (Options::redirect_to): IoTDB's setRedirectInfo (apache/iotdb
/// `iotdb-core/datanode/src/main/java/org/apache/iotdb/db/queryengine/plan/planner/
/// TreeModelPlanner.java`) changes only a successful answer — a multi-device statement (InsertRowsStatement,
/// InsertMultiTabletsStatement) becomes 400 with one 200 sub-status per device carrying its
/// leader, a single-device one keeps its 200 and carries the leader.
fn redirected(shared: &Shared, method: &str, devices: usize, status: Status) -> Status {
    let Some(leader) = shared.options.redirect_to.clone() else {
        return status;
    };
    if !status.is_ok() {
        return status;
    }
    let mut ok = Status::ok();
    ok.redirect_node = Some(leader);
    if matches!(
        method,
        "insertTablets" | "insertRecords" | "insertStringRecords"
    ) {
        Status {
            code: status::REDIRECTION_RECOMMEND,
            message: None,
            sub_status: vec![ok; devices],
            redirect_node: None,
        }
    } else {
        ok
    }
}

fn open_session(
    shared: &Shared,
    connection: &mut Connection,
    req: &Struct,
) -> Result<Response, String> {
    let version = req.i32(1, "TSOpenSessionReq.client_protocol")?;
    let zone_id = req.string(2, "TSOpenSessionReq.zoneId")?;
    let user = req.string(3, "TSOpenSessionReq.username")?;
    let password = req.opt_string(4, "TSOpenSessionReq.password")?;
    let refuse = |status| Ok(refusal(ResultType::OpenSessionResp, "openSession", status));
    if version != PROTOCOL_V3 {
        return refuse(Status::error(
            status::INCOMPATIBLE_VERSION,
            format!("The version is incompatible: client protocol {version}, server protocol {PROTOCOL_V3} (IOTDB_SERVICE_PROTOCOL_V3)"),
        ));
    }
    if user != shared.options.user || password.as_deref() != Some(shared.options.password.as_str())
    {
        return refuse(Status::error(
            status::WRONG_LOGIN_PASSWORD,
            "Authentication failed.",
        ));
    }
    let session_id = shared.next_session_id.fetch_add(1, Ordering::SeqCst);
    connection.session = Some(Session {
        zone_id,
        queries: HashMap::new(),
    });
    let mut ok = Status::ok();
    ok.message = Some("Login successfully".into());
    Ok(Response::Value(Value::Struct(
        Struct::new()
            .with(1, status_value(&ok))
            .with(2, Value::I32(PROTOCOL_V3))
            .with(3, Value::I64(session_id)),
    )))
}

fn execute_statement(
    shared: &Shared,
    session: &mut Session,
    req: &Struct,
) -> Result<Value, String> {
    let sql = req.string(2, "TSExecuteStatementReq.statement")?;
    let fetch_size = req
        .opt_i32(4, "TSExecuteStatementReq.fetchSize")?
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_FETCH_SIZE);
    let outcome = sql::run(&mut shared.store(), &sql);
    let status_only = |status: &Status| Value::Struct(Struct::new().with(1, status_value(status)));
    Ok(match outcome {
        Err(status) => status_only(&status),
        Ok(None) => status_only(&Status::ok()),
        Ok(Some(mut result)) => {
            let query_id = shared.next_query_id.fetch_add(1, Ordering::SeqCst);
            let first = result.take(fetch_size);
            let data_set = buffers::encode_query_data_set(result.columns.len(), &first);
            let resp = Struct::new()
                .with(1, status_value(&Status::ok()))
                .with(2, Value::I64(query_id))
                .with(3, Value::strings(result.columns.clone()))
                .with(5, Value::Bool(result.ignore_timestamp))
                .with(6, Value::strings(result.types.iter().map(|t| t.name())))
                .with(7, Value::Struct(data_set));
            session.queries.insert(query_id, result);
            Value::Struct(resp)
        }
    })
}

fn fetch_results(session: &mut Session, req: &Struct) -> Result<Value, String> {
    let fetch_size = req.i32(3, "TSFetchResultsReq.fetchSize")?;
    let query_id = req.i64(4, "TSFetchResultsReq.queryId")?;
    let ok = status_value(&Status::ok());
    let chunk = match session.queries.get_mut(&query_id) {
        Some(result) if !result.rows.is_empty() => {
            let rows = result.take(usize::try_from(fetch_size).unwrap_or(DEFAULT_FETCH_SIZE));
            Some(buffers::encode_query_data_set(result.columns.len(), &rows))
        }
        _ => {
            session.queries.remove(&query_id);
            None
        }
    };
    let resp = Struct::new()
        .with(1, ok)
        .with(2, Value::Bool(chunk.is_some()))
        .with(3, Value::Bool(true))
        .with_opt(4, chunk.map(Value::Struct));
    Ok(Value::Struct(resp))
}

/// A schema from wire ids, or the status that refuses it: IoTDB checks that the encoding
/// can encode the type before it creates anything (store::check_encoding).
fn schema_of(
    data_type: i32,
    encoding: i32,
    compressor: i32,
) -> Result<(StandInDataType, &'static str, &'static str), Status> {
    let data_type = store::data_type_from_id(data_type)?;
    let encoding = store::encoding_name(encoding)?;
    store::check_encoding(data_type, encoding)?;
    Ok((data_type, encoding, store::compressor_name(compressor)?))
}

fn create_timeseries(shared: &Shared, req: &Struct) -> Result<Status, String> {
    let path = req.string(2, "TSCreateTimeseriesReq.path")?;
    let data_type = req.i32(3, "TSCreateTimeseriesReq.dataType")?;
    let encoding = req.i32(4, "TSCreateTimeseriesReq.encoding")?;
    let compressor = req.i32(5, "TSCreateTimeseriesReq.compressor")?;
    Ok(match schema_of(data_type, encoding, compressor) {
        Ok((data_type, encoding, compressor)) => shared
            .store()
            .create_timeseries(&path, data_type, encoding, compressor),
        Err(status) => status,
    })
}

fn create_aligned_timeseries(shared: &Shared, req: &Struct) -> Result<Status, String> {
    let device = req.string(2, "TSCreateAlignedTimeseriesReq.prefixPath")?;
    let measurements = req.strings(3, "TSCreateAlignedTimeseriesReq.measurements")?;
    let data_types = req.i32s(4, "TSCreateAlignedTimeseriesReq.dataTypes")?;
    let encodings = req.i32s(5, "TSCreateAlignedTimeseriesReq.encodings")?;
    let compressors = req.i32s(6, "TSCreateAlignedTimeseriesReq.compressors")?;
    if let Some(status) = lengths_differ(&[
        measurements.len(),
        data_types.len(),
        encodings.len(),
        compressors.len(),
    ]) {
        return Ok(status);
    }
    let mut schema = Vec::with_capacity(measurements.len());
    for (i, measurement) in measurements.into_iter().enumerate() {
        match schema_of(data_types[i], encodings[i], compressors[i]) {
            Ok((t, e, c)) => schema.push((measurement, t, e, c)),
            Err(status) => return Ok(status),
        }
    }
    Ok(shared.store().create_aligned_timeseries(&device, &schema))
}

fn create_multi_timeseries(shared: &Shared, req: &Struct) -> Result<Status, String> {
    let paths = req.strings(2, "TSCreateMultiTimeseriesReq.paths")?;
    let data_types = req.i32s(3, "TSCreateMultiTimeseriesReq.dataTypes")?;
    let encodings = req.i32s(4, "TSCreateMultiTimeseriesReq.encodings")?;
    let compressors = req.i32s(5, "TSCreateMultiTimeseriesReq.compressors")?;
    if let Some(status) = lengths_differ(&[
        paths.len(),
        data_types.len(),
        encodings.len(),
        compressors.len(),
    ]) {
        return Ok(status);
    }
    // IoTDB builds a PartialPath of every path before creating any: one illegal path
    // refuses the whole call with 509.
    let paths = match paths
        .iter()
        .map(|p| path::canonical(p, path::Kind::Path))
        .collect::<Result<Vec<String>, Status>>()
    {
        Ok(paths) => paths,
        Err(status) => return Ok(status),
    };
    let mut store = shared.store();
    // Like IoTDB (RegionWriteExecutor.visitCreateMultiTimeSeries), the series that can
    // be created are, and the others (503 TIMESERIES_ALREADY_EXIST for an existing one)
    // come back as the sub-statuses of a 302 MULTIPLE_ERROR.
    let failures = paths
        .iter()
        .enumerate()
        .map(
            |(i, path)| match schema_of(data_types[i], encodings[i], compressors[i]) {
                Ok((t, e, c)) => store.create_timeseries(path, t, e, c),
                Err(status) => status,
            },
        )
        .filter(|status| !status.is_ok())
        .collect();
    Ok(Status::multiple(failures))
}

fn lengths_differ(lengths: &[usize]) -> Option<Status> {
    (lengths.windows(2).any(|w| w[0] != w[1])).then(|| {
        Status::error(
            status::ILLEGAL_PARAMETER,
            format!("the lists of the request differ in length: {lengths:?}"),
        )
    })
}

fn malformed(message: String) -> Status {
    Status::error(status::EXECUTE_STATEMENT_ERROR, message)
}

/// The writes of one insert request: `Err(String)` if the Thrift struct itself is
/// unreadable, `Ok(Err(status))` if its content is refused before anything is written.
fn device_writes(method: &str, req: &Struct) -> Result<Result<Vec<DeviceWrite>, Status>, String> {
    let aligned_field = if method.starts_with("insertTablet") {
        8
    } else {
        6
    };
    let aligned = req.opt_bool(aligned_field, "isAligned")?.unwrap_or(false);
    Ok(match method {
        "insertRecord" => {
            if req.opt_bool(7, "TSInsertRecordReq.isWriteToTable")? == Some(true) {
                return Ok(Err(Status::not_implemented(
                    "the table model (isWriteToTable)",
                )));
            }
            let device = req.string(2, "TSInsertRecordReq.prefixPath")?;
            let measurements = req.strings(3, "TSInsertRecordReq.measurements")?;
            let values = req.bytes(4, "TSInsertRecordReq.values")?;
            let timestamp = req.i64(5, "TSInsertRecordReq.timestamp")?;
            record(device, aligned, timestamp, &measurements, values).map(|w| vec![w])
        }
        "insertRecords" | "insertRecordsOfOneDevice" => {
            let devices = if method == "insertRecords" {
                req.strings(2, "TSInsertRecordsReq.prefixPaths")?
            } else {
                Vec::new()
            };
            let one_device = if method == "insertRecordsOfOneDevice" {
                Some(req.string(2, "TSInsertRecordsOfOneDeviceReq.prefixPath")?)
            } else {
                None
            };
            let measurements = req.string_lists(3, "measurementsList")?;
            let values = req.binaries(4, "valuesList")?;
            let timestamps = req.i64s(5, "timestamps")?;
            let mut lengths = vec![measurements.len(), values.len(), timestamps.len()];
            if one_device.is_none() {
                lengths.push(devices.len());
            }
            if let Some(status) = lengths_differ(&lengths) {
                return Ok(Err(status));
            }
            (0..timestamps.len())
                .map(|i| {
                    let device = one_device.clone().unwrap_or_else(|| devices[i].clone());
                    record(device, aligned, timestamps[i], &measurements[i], values[i])
                })
                .collect()
        }
        "insertStringRecord" => {
            let device = req.string(2, "TSInsertStringRecordReq.prefixPath")?;
            let measurements = req.strings(3, "TSInsertStringRecordReq.measurements")?;
            let values = req.strings(4, "TSInsertStringRecordReq.values")?;
            let timestamp = req.i64(5, "TSInsertStringRecordReq.timestamp")?;
            string_record(device, aligned, timestamp, measurements, values).map(|w| vec![w])
        }
        "insertStringRecords" | "insertStringRecordsOfOneDevice" => {
            let devices = if method == "insertStringRecords" {
                req.strings(2, "TSInsertStringRecordsReq.prefixPaths")?
            } else {
                Vec::new()
            };
            let one_device = if method == "insertStringRecordsOfOneDevice" {
                Some(req.string(2, "TSInsertStringRecordsOfOneDeviceReq.prefixPath")?)
            } else {
                None
            };
            let measurements = req.string_lists(3, "measurementsList")?;
            let values = req.string_lists(4, "valuesList")?;
            let timestamps = req.i64s(5, "timestamps")?;
            let mut lengths = vec![measurements.len(), values.len(), timestamps.len()];
            if one_device.is_none() {
                lengths.push(devices.len());
            }
            if let Some(status) = lengths_differ(&lengths) {
                return Ok(Err(status));
            }
            measurements
                .into_iter()
                .zip(values)
                .enumerate()
                .map(|(i, (measurements, values))| {
                    let device = one_device.clone().unwrap_or_else(|| devices[i].clone());
                    string_record(device, aligned, timestamps[i], measurements, values)
                })
                .collect()
        }
        "insertTablet" => {
            if req.opt_bool(9, "TSInsertTabletReq.writeToTable")? == Some(true) {
                return Ok(Err(Status::not_implemented(
                    "the table model (writeToTable)",
                )));
            }
            if req.opt_bool(11, "TSInsertTabletReq.isCompressed")? == Some(true) {
                return Ok(Err(Status::not_implemented(
                    "compressed tablets (isCompressed)",
                )));
            }
            tablet(
                req.string(2, "TSInsertTabletReq.prefixPath")?,
                aligned,
                &req.strings(3, "TSInsertTabletReq.measurements")?,
                req.bytes(4, "TSInsertTabletReq.values")?,
                req.bytes(5, "TSInsertTabletReq.timestamps")?,
                &req.i32s(6, "TSInsertTabletReq.types")?,
                req.i32(7, "TSInsertTabletReq.size")?,
            )
            .map(|w| vec![w])
        }
        "insertTablets" => {
            let devices = req.strings(2, "TSInsertTabletsReq.prefixPaths")?;
            let measurements = req.string_lists(3, "TSInsertTabletsReq.measurementsList")?;
            let values = req.binaries(4, "TSInsertTabletsReq.valuesList")?;
            let timestamps = req.binaries(5, "TSInsertTabletsReq.timestampsList")?;
            let types = req.i32_lists(6, "TSInsertTabletsReq.typesList")?;
            let sizes = req.i32s(7, "TSInsertTabletsReq.sizeList")?;
            if let Some(status) = lengths_differ(&[
                devices.len(),
                measurements.len(),
                values.len(),
                timestamps.len(),
                types.len(),
                sizes.len(),
            ]) {
                return Ok(Err(status));
            }
            (0..devices.len())
                .map(|i| {
                    tablet(
                        devices[i].clone(),
                        aligned,
                        &measurements[i],
                        values[i],
                        timestamps[i],
                        &types[i],
                        sizes[i],
                    )
                })
                .collect()
        }
        _ => unreachable!("only insert methods come here"),
    })
}

fn record(
    device: String,
    aligned: bool,
    timestamp: i64,
    measurements: &[String],
    values: &[u8],
) -> Result<DeviceWrite, Status> {
    let columns = buffers::decode_record(measurements, values).map_err(malformed)?;
    Ok(DeviceWrite {
        device,
        aligned,
        timestamps: vec![timestamp],
        columns,
    })
}

fn string_record(
    device: String,
    aligned: bool,
    timestamp: i64,
    measurements: Vec<String>,
    values: Vec<String>,
) -> Result<DeviceWrite, Status> {
    if let Some(status) = lengths_differ(&[measurements.len(), values.len()]) {
        return Err(status);
    }
    let columns = measurements
        .into_iter()
        .zip(values)
        .map(|(measurement, value)| Column {
            measurement,
            declared: None,
            cells: vec![Cell::Raw(value)],
        })
        .collect();
    Ok(DeviceWrite {
        device,
        aligned,
        timestamps: vec![timestamp],
        columns,
    })
}

fn tablet(
    device: String,
    aligned: bool,
    measurements: &[String],
    values: &[u8],
    timestamps: &[u8],
    types: &[i32],
    size: i32,
) -> Result<DeviceWrite, Status> {
    let types = types
        .iter()
        .map(|id| store::data_type_from_id(*id))
        .collect::<Result<Vec<_>, Status>>()?;
    let (timestamps, columns) =
        buffers::decode_tablet(measurements, &types, size, timestamps, values)
            .map_err(malformed)?;
    Ok(DeviceWrite {
        device,
        aligned,
        timestamps,
        columns,
    })
}

/// common.thrift's TSStatus: 1 code, 2 message, 3 subStatus, 4 redirectNode (a TEndPoint:
/// 1 ip, 2 port).
fn status_value(status: &Status) -> Value {
    let sub_status = (!status.sub_status.is_empty()).then(|| {
        Value::List(
            thrift::protocol::TType::Struct,
            status.sub_status.iter().map(status_value).collect(),
        )
    });
    let redirect_node = status.redirect_node.as_ref().map(|(ip, port)| {
        Value::Struct(
            Struct::new()
                .with(1, Value::string(ip.clone()))
                .with(2, Value::I32(*port)),
        )
    });
    Value::Struct(
        Struct::new()
            .with(1, Value::I32(status.code))
            .with_opt(2, status.message.clone().map(Value::string))
            .with_opt(3, sub_status)
            .with_opt(4, redirect_node),
    )
}

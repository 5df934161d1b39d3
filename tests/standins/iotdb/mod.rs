//! A STAND-IN for Apache IoTDB — not IoTDB. No IoTDB server can be installed where the
//! tests run, so this in-process server speaks IoTDB's real client protocol (the Thrift
//! service `IClientRPCService` of apache/iotdb's
//! `iotdb-protocol/thrift-datanode/src/main/thrift/client.thrift`, with `TSStatus` from
//! `thrift-commons/.../common.thrift`) well enough for the real `iotdb-client-rs` client
//! and a tsmig sink to talk to it, and keeps what they write in memory for the tests to
//! inspect.
//!
//! ```text
//!  iotdb-client-rs ──TCP──► accept thread ──► one thread per connection
//!                              │                 read frame (framed transport)
//!                              │                 decode call (binary or compact)  protocol.rs
//!                              │                 answer by client.thrift ids      service.rs
//!                              │                   tablet/record byte layouts     buffers.rs
//!                              │                   SQL subset                     sql.rs
//!                              │                   path syntax, quoting           path.rs
//!                              ▼                   tree model in memory           store.rs
//!                          faults: refuse connections, fail / hang up on inserts, delay
//! ```
//!
//! The protocol subset (field ids and types in `client_subset.thrift` beside this file):
//! openSession, closeSession, setStorageGroup, deleteStorageGroups, createTimeseries,
//! createAlignedTimeseries, createMultiTimeseries, deleteTimeseries, insertRecord,
//! insertRecords, insertRecordsOfOneDevice, insertStringRecord, insertStringRecords,
//! insertStringRecordsOfOneDevice, insertTablet, insertTablets, the testInsert* calls
//! (answered without writing, as IoTDB does), deleteData, executeStatement /
//! executeUpdateStatement / executeQueryStatement / executeBatchStatement over the SQL
//! subset of sql.rs, fetchResults, closeOperation, getTimeZone, setTimeZone,
//! requestStatementId. Every other method of the service answers "not implemented by
//! the stand-in: <method>" (status 300 where its result carries a status).
//!
//! Paths follow IoTDB 1.x's syntax (path.rs): a node that is not a plain identifier
//! (ASCII letters, digits, `_`, CJK; not a number; not TIME/TIMESTAMP/ROOT) must be
//! back-quoted, a backquote inside doubled — ``root.factory.`dev-0001`.`temp-c` ``.
//! Unquoted, such a node is refused with 509 ILLEGAL_PATH by every RPC that takes a path
//! (and with 700 by the SQL parser). Paths are stored and shown in IoTDB's display form,
//! quoted only where needed, so ``root.sg.`d1` `` and `root.sg.d1` are one device.
//!
//! Refusals it shares with IoTDB (each cited where it is made):
//! - TTL is kept per database (SET TTL / UNSET TTL). A row older than its database's TTL
//!   (`now - time > ttl`, times in ms) is not written: the insert writes its other rows
//!   and answers 607 OUT_OF_TTL "Insertion time [..] is less than ttl time bound [..]"
//!   (store.rs, `drop_expired_rows`).
//! - A series is created only with an encoding its type can take (tsfile's
//!   `TYPE_SUPPORTED_ENCODINGS`): otherwise 507 "encoding GORILLA does not support TEXT",
//!   a sub-status of 302 in createMultiTimeseries (store.rs, `check_encoding`).
//! - With [`Options::redirect_to`] it plays a DataNode of a cluster: a successful
//!   multi-device insert is answered 400 REDIRECTION_RECOMMEND with 200 sub-statuses
//!   naming the leader (service.rs, `redirected`).
//!
//! What it does not do, so a test cannot lean on it: persistence, the table model,
//! expiring stored points later by TTL (and IoTDB 1.3's path-level TTL), timestamp
//! precisions other than ms for the TTL, tags/attributes/aliases (accepted and dropped),
//! schema templates, views, the V2 (TsBlock) query calls, raw-data/last/aggregation
//! queries, WHERE clauses (but `time = t OR ...` on one device), wildcards inside a node
//! (`d*`), the newer data types (TIMESTAMP, DATE, BLOB, STRING) and encodings (ids 9 to
//! 13), compressed tablets, writing to the node a redirect names, and any notion of
//! memory pressure other than the injected failures.
//!
//! Use from an integration test:
//! `#[path = "standins/iotdb/mod.rs"] mod iotdb_standin;`
#![allow(dead_code)]

mod buffers;
mod path;
mod protocol;
mod service;
mod sql;
pub mod status;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the stand-in is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The only user openSession accepts.
    pub user: String,
    /// That user's password.
    pub password: String,
    /// IoTDB's enable_auto_create_schema: writes create missing databases and series.
    pub auto_create_schema: bool,
    /// Plays one DataNode of a cluster whose data regions the DataNode at this endpoint
    /// (ip, port) leads, as IoTDB's coordinator tells a client after a write it forwarded
    /// (TreeModelPlanner.setRedirectInfo): a multi-device insert (insertTablets,
    /// insertRecords, insertStringRecords) that succeeded is answered 400
    /// REDIRECTION_RECOMMEND with one 200 sub-status per device, each naming this
    /// endpoint as its `redirectNode`; a single-device insert is answered 200 with the
    /// `redirectNode`. Nothing is written anywhere else. `None` (the default): a
    /// single-node IoTDB, which leads every region itself and never redirects.
    pub redirect_to: Option<(String, i32)>,
}

impl Default for Options {
    /// IoTDB's out-of-the-box settings: root/root, auto-create-schema on, one node.
    fn default() -> Options {
        Options {
            user: "root".into(),
            password: "root".into(),
            auto_create_schema: true,
            redirect_to: None,
        }
    }
}

/// The IoTDB data types the stand-in keeps, with IoTDB's TSDataType ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StandInDataType {
    Boolean,
    Int32,
    Int64,
    Float,
    Double,
    Text,
}

impl StandInDataType {
    /// IoTDB's name of the type, as SHOW TIMESERIES prints it.
    pub fn name(self) -> &'static str {
        match self {
            StandInDataType::Boolean => "BOOLEAN",
            StandInDataType::Int32 => "INT32",
            StandInDataType::Int64 => "INT64",
            StandInDataType::Float => "FLOAT",
            StandInDataType::Double => "DOUBLE",
            StandInDataType::Text => "TEXT",
        }
    }

    /// IoTDB's TSDataType id (its serialized byte).
    pub fn id(self) -> i32 {
        self as i32
    }

    pub fn from_id(id: i32) -> Option<StandInDataType> {
        Some(match id {
            0 => StandInDataType::Boolean,
            1 => StandInDataType::Int32,
            2 => StandInDataType::Int64,
            3 => StandInDataType::Float,
            4 => StandInDataType::Double,
            5 => StandInDataType::Text,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<StandInDataType> {
        [
            StandInDataType::Boolean,
            StandInDataType::Int32,
            StandInDataType::Int64,
            StandInDataType::Float,
            StandInDataType::Double,
            StandInDataType::Text,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// One stored value, in the IoTDB type of its series.
#[derive(Clone, Debug, PartialEq)]
pub enum StandInValue {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    /// IoTDB's TEXT is bytes; the stand-in keeps them as a string (lossy if not UTF-8).
    Text(String),
}

impl StandInValue {
    pub fn data_type(&self) -> StandInDataType {
        match self {
            StandInValue::Boolean(_) => StandInDataType::Boolean,
            StandInValue::Int32(_) => StandInDataType::Int32,
            StandInValue::Int64(_) => StandInDataType::Int64,
            StandInValue::Float(_) => StandInDataType::Float,
            StandInValue::Double(_) => StandInDataType::Double,
            StandInValue::Text(_) => StandInDataType::Text,
        }
    }
}

impl fmt::Display for StandInValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StandInValue::Boolean(b) => write!(f, "{b}"),
            StandInValue::Int32(i) => write!(f, "{i}"),
            StandInValue::Int64(i) => write!(f, "{i}"),
            StandInValue::Float(x) => write!(f, "{x:?}"),
            StandInValue::Double(x) => write!(f, "{x:?}"),
            StandInValue::Text(s) => write!(f, "{s}"),
        }
    }
}

/// One time series as SHOW TIMESERIES would describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Full path, e.g. `root.factory.d1.temperature`.
    pub path: String,
    pub data_type: StandInDataType,
    /// IoTDB's encoding name, e.g. `RLE`, `GORILLA`.
    pub encoding: String,
    /// IoTDB's compressor name, e.g. `SNAPPY`, `LZ4`.
    pub compressor: String,
}

/// A path in IoTDB's display form — every node quoted only where needed, backquotes
/// inside doubled — or the reason IoTDB would refuse it (its 509 message). Wildcards
/// (`*`, `**`) are allowed. `canonical_path("root.sg.`d1`.`a-b`")` is
/// `Ok("root.sg.d1.`a-b`")`; `canonical_path("root.sg.a-b")` is an error.
pub fn canonical_path(path: &str) -> Result<String, String> {
    path::canonical(path, path::Kind::Pattern).map_err(|s| s.message.unwrap_or_default())
}

/// One node name as IoTDB displays it: `d1` stays `d1`, `dev-0001` becomes
/// `` `dev-0001` ``, a`b becomes `` `a``b` ``.
pub fn display_node(name: &str) -> String {
    path::display_node(name)
}

/// A running stand-in; it stops (and drops every connection) when dropped.
pub struct IotdbStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    connections: Connections,
}

/// Each connection's stream (to shut it on drop) and thread.
type Connections = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

/// What every connection thread shares.
struct Shared {
    options: Options,
    store: Mutex<store::Store>,
    faults: Mutex<Faults>,
    calls: Mutex<BTreeMap<String, usize>>,
    next_session_id: AtomicI64,
    next_query_id: AtomicI64,
    next_statement_id: AtomicI64,
}

#[derive(Default)]
struct Faults {
    refuse_connections: usize,
    hang_up_next: usize,
    fail_next: usize,
    fail_code: i32,
    delay: Duration,
}

enum WriteFault {
    HangUp,
    Status(i32),
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_call(&self, method: &str) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry(method.to_string()).or_default() += 1;
    }

    fn take_write_fault(&self) -> Option<WriteFault> {
        let mut faults = self.faults();
        if faults.hang_up_next > 0 {
            faults.hang_up_next -= 1;
            Some(WriteFault::HangUp)
        } else if faults.fail_next > 0 {
            faults.fail_next -= 1;
            Some(WriteFault::Status(faults.fail_code))
        } else {
            None
        }
    }

    fn take_refusal(&self) -> bool {
        let mut faults = self.faults();
        if faults.refuse_connections > 0 {
            faults.refuse_connections -= 1;
            true
        } else {
            false
        }
    }
}

impl IotdbStandIn {
    /// Starts a stand-in on 127.0.0.1 and a free port, with IoTDB's default settings.
    pub fn start() -> IotdbStandIn {
        IotdbStandIn::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> IotdbStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the IoTDB stand-in");
        let addr = listener.local_addr().expect("the stand-in's address");
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(options.auto_create_schema)),
            options,
            faults: Mutex::new(Faults::default()),
            calls: Mutex::new(BTreeMap::new()),
            next_session_id: AtomicI64::new(1),
            next_query_id: AtomicI64::new(1),
            next_statement_id: AtomicI64::new(1),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (shared, stopping, connections) =
                (shared.clone(), stopping.clone(), connections.clone());
            std::thread::Builder::new()
                .name("iotdb-standin-accept".into())
                .spawn(move || accept_loop(listener, shared, stopping, connections))
                .expect("spawn the stand-in's accept thread")
        };
        IotdbStandIn {
            addr,
            shared,
            stopping,
            acceptor: Some(acceptor),
            connections,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // ---- inspection --------------------------------------------------------------
    //
    // Paths come back in display form (``root.factory.`dev-0001`.temperature``). Paths
    // given may be in any spelling: quoted or not where a node is plain, and even
    // unquoted where IoTDB would need quotes (`root.factory.dev-0001.temperature`, where
    // every dot separates nodes).

    /// Databases (storage groups), sorted.
    pub fn databases(&self) -> Vec<String> {
        self.shared.store().databases()
    }

    /// Every time series, sorted by path.
    pub fn series(&self) -> Vec<SeriesInfo> {
        self.shared.store().all_series()
    }

    /// The points of one series by time; empty if the series does not exist.
    pub fn points(&self, path: &str) -> Vec<(i64, StandInValue)> {
        match path::lenient(path) {
            Some(path) => self.shared.store().points(&path),
            None => Vec::new(),
        }
    }

    /// The points of every series, by path.
    pub fn all_points(&self) -> BTreeMap<String, Vec<(i64, StandInValue)>> {
        let store = self.shared.store();
        store
            .series_paths()
            .map(|path| (path.clone(), store.points(path)))
            .collect()
    }

    /// Whether a device's series are aligned; `None` if it has none.
    pub fn is_aligned(&self, device: &str) -> Option<bool> {
        self.shared.store().is_aligned(&path::lenient(device)?)
    }

    /// The TTL (milliseconds) set on a database by SET TTL; `None` if none is set (or
    /// it was unset, or there is no such database).
    pub fn ttl(&self, database: &str) -> Option<i64> {
        self.shared.store().ttl(&path::lenient(database)?)
    }

    /// How many calls of a Thrift method (e.g. `"insertTablet"`) arrived, answered or not.
    pub fn calls(&self, method: &str) -> usize {
        let calls = self.shared.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(method).copied().unwrap_or(0)
    }

    /// Every method called so far with its count.
    pub fn all_calls(&self) -> BTreeMap<String, usize> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    // ---- failure injection -------------------------------------------------------

    /// The next `n` connections are accepted and closed at once, before a byte is read.
    pub fn refuse_connections(&self, n: usize) {
        self.shared.faults().refuse_connections = n;
    }

    /// The next `n` insert calls (insertTablet(s), insertRecord(s),
    /// insertRecordsOfOneDevice, insertStringRecord(s)...) write nothing and answer
    /// `status_code`, e.g. [`status::WRITE_PROCESS_REJECT`].
    pub fn fail_next(&self, n: usize, status_code: i32) {
        let mut faults = self.shared.faults();
        faults.fail_next = n;
        faults.fail_code = status_code;
    }

    /// The next `n` insert calls write nothing and the connection is closed without an
    /// answer, as when the server dies mid-call.
    pub fn hang_up_next(&self, n: usize) {
        self.shared.faults().hang_up_next = n;
    }

    /// Every call waits this long before it is answered (zero to stop).
    pub fn delay(&self, delay: Duration) {
        self.shared.faults().delay = delay;
    }
}

impl Drop for IotdbStandIn {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept thread, which sees `stopping` and returns.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for (stream, _) in &connections {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, thread) in connections {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    connections: Connections,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.take_refusal() {
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("iotdb-standin-conn".into())
            .spawn(move || serve(stream, &shared));
        if let Ok(thread) = spawned {
            let mut connections = connections.lock().unwrap_or_else(|e| e.into_inner());
            // Finished connections are forgotten, closing their handle's socket.
            connections.retain(|(_, thread)| !thread.is_finished());
            connections.push((handle, thread));
        }
    }
}

/// Answers one connection's calls, one at a time, until the client hangs up.
fn serve(mut stream: TcpStream, shared: &Shared) {
    // As IoTDB's: its client service accepts on thrift's TServerSocket
    // (AbstractThriftServiceThread.openTransport in apache/iotdb's node-commons), whose
    // acceptImpl wraps each socket in a TSocket, and TSocket(Socket) sets TCP_NODELAY
    // (apache/thrift, lib/java/.../transport/TSocket.java). An answer leaves in one write.
    let _ = stream.set_nodelay(true);
    let mut connection = service::Connection::default();
    loop {
        let frame = match protocol::read_frame(&mut stream) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => return,
        };
        let Ok(call) = protocol::decode_call(&frame) else {
            return; // not even a message header: nothing to answer to
        };
        match service::answer(shared, &mut connection, call) {
            service::Answer::Frame(bytes) => {
                if stream
                    .write_all(&bytes)
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
            service::Answer::HangUp => {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

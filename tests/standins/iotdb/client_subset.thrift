// The part of IoTDB's client protocol that the IoTDB STAND-IN (tests/standins/iotdb/)
// implements: field ids and types as apache/iotdb defines them in
// iotdb-protocol/thrift-datanode/src/main/thrift/client.thrift (service
// IClientRPCService) and iotdb-protocol/thrift-commons/src/main/thrift/common.thrift
// (TSStatus). Documentation for the stand-in's readers, not compiled: the stand-in reads
// requests generically and picks fields by these ids. Fields the stand-in reads but
// ignores are marked "ignored"; fields it never sends or reads are left out.
//
// Transport: framed (4-byte big-endian length per message). Protocol: binary, strict
// (iotdb-client-rs default), or compact (iotdb-client-rs with enable_compression).

struct TSStatus {                        // common.thrift
  1: required i32 code
  2: optional string message
  3: optional list<TSStatus> subStatus
  4: optional TEndPoint redirectNode      // sent with Options::redirect_to
  // 5 needRetry, 6 responseData: never sent by the stand-in
}

struct TEndPoint {                       // common.thrift
  1: required string ip
  2: required i32 port
}

enum TSProtocolVersion { IOTDB_SERVICE_PROTOCOL_V1 = 0, IOTDB_SERVICE_PROTOCOL_V2 = 1,
                         IOTDB_SERVICE_PROTOCOL_V3 = 2 }   // only V3 is accepted

struct TSOpenSessionReq {
  1: required TSProtocolVersion client_protocol
  2: required string zoneId
  3: required string username
  4: optional string password
  5: optional map<string, string> configuration        // ignored
}
struct TSOpenSessionResp {
  1: required TSStatus status
  2: required TSProtocolVersion serverProtocolVersion   // always V3
  3: optional i64 sessionId
}
struct TSCloseSessionReq { 1: required i64 sessionId }

struct TSExecuteStatementReq {
  1: required i64 sessionId
  2: required string statement
  3: required i64 statementId                           // ignored
  4: optional i32 fetchSize                             // rows in the first answer
  5: optional i64 timeout                               // ignored
}
struct TSQueryDataSet {
  1: required binary time                               // rows x i64
  2: required list<binary> valueList                    // per column, non-null values
  3: required list<binary> bitmapList                   // per column, 1 bit/row, MSB first
}
struct TSExecuteStatementResp {
  1: required TSStatus status
  2: optional i64 queryId
  3: optional list<string> columns
  5: optional bool ignoreTimeStamp
  6: optional list<string> dataTypeList
  7: optional TSQueryDataSet queryDataSet
}
struct TSExecuteBatchStatementReq { 1: required i64 sessionId  2: required list<string> statements }
struct TSFetchResultsReq {
  1: required i64 sessionId
  2: required string statement                          // ignored
  3: required i32 fetchSize
  4: required i64 queryId
  5: required bool isAlign                              // ignored
}
struct TSFetchResultsResp {
  1: required TSStatus status
  2: required bool hasResultSet
  3: required bool isAlign
  4: optional TSQueryDataSet queryDataSet
}
struct TSCloseOperationReq { 1: required i64 sessionId  2: optional i64 queryId }
struct TSGetTimeZoneResp { 1: required TSStatus status  2: required string timeZone }
struct TSSetTimeZoneReq { 1: required i64 sessionId  2: required string timeZone }

struct TSCreateTimeseriesReq {
  1: required i64 sessionId
  2: required string path
  3: required i32 dataType                              // TSDataType id
  4: required i32 encoding                              // TSEncoding id
  5: required i32 compressor                            // CompressionType id
  // 6 props, 7 tags, 8 attributes, 9 measurementAlias: ignored
}
struct TSCreateAlignedTimeseriesReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required list<i32> dataTypes
  5: required list<i32> encodings
  6: required list<i32> compressors
  // 7 measurementAlias, 8 tagsList, 9 attributesList: ignored
}
struct TSCreateMultiTimeseriesReq {
  1: required i64 sessionId
  2: required list<string> paths
  3: required list<i32> dataTypes
  4: required list<i32> encodings
  5: required list<i32> compressors
  // 6 propsList, 7 tagsList, 8 attributesList, 9 measurementAliasList: ignored
}

struct TSInsertRecordReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required binary values                             // per value: type byte (-2 null) + value
  5: required i64 timestamp
  6: optional bool isAligned
  7: optional bool isWriteToTable                       // true: not implemented
}
struct TSInsertStringRecordReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required list<string> values
  5: required i64 timestamp
  6: optional bool isAligned
}
struct TSInsertTabletReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<string> measurements
  4: required binary values                             // column-major, then bitmaps
  5: required binary timestamps                         // size x i64
  6: required list<i32> types
  7: required i32 size
  8: optional bool isAligned
  9: optional bool writeToTable                         // true: not implemented
  11: optional bool isCompressed                        // true: not implemented
}
struct TSInsertTabletsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<binary> timestampsList
  6: required list<list<i32>> typesList
  7: required list<i32> sizeList
  8: optional bool isAligned
}
struct TSInsertRecordsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}
struct TSInsertRecordsOfOneDeviceReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<list<string>> measurementsList
  4: required list<binary> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}
struct TSInsertStringRecordsOfOneDeviceReq {
  1: required i64 sessionId
  2: required string prefixPath
  3: required list<list<string>> measurementsList
  4: required list<list<string>> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}
struct TSInsertStringRecordsReq {
  1: required i64 sessionId
  2: required list<string> prefixPaths
  3: required list<list<string>> measurementsList
  4: required list<list<string>> valuesList
  5: required list<i64> timestamps
  6: optional bool isAligned
}
struct TSDeleteDataReq {
  1: required i64 sessionId
  2: required list<string> paths                        // series paths or patterns
  3: required i64 startTime                             // inclusive
  4: required i64 endTime                               // inclusive
}

service IClientRPCService {                             // the implemented methods
  TSOpenSessionResp openSession(1: TSOpenSessionReq req)
  TSStatus closeSession(1: TSCloseSessionReq req)
  TSExecuteStatementResp executeStatement(1: TSExecuteStatementReq req)
  TSStatus executeBatchStatement(1: TSExecuteBatchStatementReq req)
  TSExecuteStatementResp executeQueryStatement(1: TSExecuteStatementReq req)
  TSExecuteStatementResp executeUpdateStatement(1: TSExecuteStatementReq req)
  TSFetchResultsResp fetchResults(1: TSFetchResultsReq req)
  TSStatus closeOperation(1: TSCloseOperationReq req)
  TSGetTimeZoneResp getTimeZone(1: i64 sessionId)
  TSStatus setTimeZone(1: TSSetTimeZoneReq req)
  TSStatus setStorageGroup(1: i64 sessionId, 2: string storageGroup)
  TSStatus createTimeseries(1: TSCreateTimeseriesReq req)
  TSStatus createAlignedTimeseries(1: TSCreateAlignedTimeseriesReq req)
  TSStatus createMultiTimeseries(1: TSCreateMultiTimeseriesReq req)
  TSStatus deleteTimeseries(1: i64 sessionId, 2: list<string> path)
  TSStatus deleteStorageGroups(1: i64 sessionId, 2: list<string> storageGroup)
  TSStatus insertRecord(1: TSInsertRecordReq req)
  TSStatus insertStringRecord(1: TSInsertStringRecordReq req)
  TSStatus insertTablet(1: TSInsertTabletReq req)
  TSStatus insertTablets(1: TSInsertTabletsReq req)
  TSStatus insertRecords(1: TSInsertRecordsReq req)
  TSStatus insertRecordsOfOneDevice(1: TSInsertRecordsOfOneDeviceReq req)
  TSStatus insertStringRecordsOfOneDevice(1: TSInsertStringRecordsOfOneDeviceReq req)
  TSStatus insertStringRecords(1: TSInsertStringRecordsReq req)
  TSStatus testInsertTablet(1: TSInsertTabletReq req)             // success, nothing written
  TSStatus testInsertTablets(1: TSInsertTabletsReq req)           // likewise
  TSStatus testInsertRecord(1: TSInsertRecordReq req)             // likewise
  TSStatus testInsertStringRecord(1: TSInsertStringRecordReq req) // likewise
  TSStatus testInsertRecords(1: TSInsertRecordsReq req)           // likewise
  TSStatus testInsertRecordsOfOneDevice(1: TSInsertRecordsOfOneDeviceReq req) // likewise
  TSStatus testInsertStringRecords(1: TSInsertStringRecordsReq req)           // likewise
  TSStatus deleteData(1: TSDeleteDataReq req)
  i64 requestStatementId(1: i64 sessionId)
}

package tsmig.bench;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.accumulators.LongCounter;
import org.apache.flink.api.common.accumulators.LongMinimum;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.runtime.state.FunctionInitializationContext;
import org.apache.flink.runtime.state.FunctionSnapshotContext;
import org.apache.flink.streaming.api.checkpoint.CheckpointedFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.RichSinkFunction;
import org.apache.flink.streaming.api.functions.source.RichParallelSourceFunction;

/**
 * Flink baseline for tsmig's benchmark: MariaDB {@code sensor_readings} → InfluxDB 1.x line
 * protocol, as a bounded DataStream job in a local (in-process) mini cluster.
 *
 * <pre>
 *   JDBC range source (P subtasks, disjoint id chunks, streaming fetch)
 *     → keyBy(device_id) → encode line protocol → batching HTTP sink (5,000 lines/POST)
 *                                               | discarding sink (--sink discard)
 * </pre>
 *
 * Prints one final line on stdout: {@code flink: rows=N seconds=S first_write_ms=M}.
 */
public final class MysqlToInflux {

    static final String ROWS = "rows";
    static final String WRITTEN = "lines-written";
    static final String POSTS = "posts";
    static final String FIRST_WRITE = "first-write-nanos";

    public static void main(String[] argv) throws Exception {
        final long startNanos = System.nanoTime();
        Args args = Args.parse(argv);

        long[] range = idRange(args.jdbcUrl, args.table);

        Configuration conf = new Configuration();
        conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
        StreamExecutionEnvironment env =
                StreamExecutionEnvironment.createLocalEnvironment(args.parallelism, conf);
        env.setRuntimeMode(RuntimeExecutionMode.STREAMING);
        env.getConfig().disableGenericTypes(); // SensorRow must go through the POJO serializer

        DataStream<SensorRow> rows =
                env.addSource(new JdbcRangeSource(args.jdbcUrl, args.table, range[0], range[1],
                                args.chunkRows, args.fetchSize))
                        .returns(SensorRow.class)
                        .name("jdbc-range-source")
                        .setParallelism(args.parallelism);

        DataStream<String> lines = rows
                .keyBy(r -> r.deviceId, Types.STRING)
                .map(new LineEncoder())
                .returns(Types.STRING)
                .name("line-protocol");

        if (args.sink.equals("influx")) {
            String writeUrl = args.influxUrl.replaceAll("/+$", "") + "/write?db="
                    + java.net.URLEncoder.encode(args.db, StandardCharsets.UTF_8) + "&precision=ms";
            lines.addSink(new InfluxSink(writeUrl, args.batchSize, startNanos)).name("influx-sink");
        } else {
            lines.addSink(new DiscardSink()).name("discard-sink");
        }

        JobExecutionResult result = env.execute("tsmig-flink-baseline " + args.table + " -> " + args.sink);
        double seconds = (System.nanoTime() - startNanos) / 1e9;

        long rowsRead = longAcc(result, ROWS, 0);
        long written = longAcc(result, WRITTEN, 0);
        long posts = longAcc(result, POSTS, 0);
        long firstWrite = longAcc(result, FIRST_WRITE, Long.MAX_VALUE);
        long firstWriteMs = firstWrite == Long.MAX_VALUE ? -1 : (firstWrite - startNanos) / 1_000_000;
        System.err.printf("flink: sink=%s parallelism=%d lines=%d posts=%d ids=[%d,%d]%n",
                args.sink, args.parallelism, written, posts, range[0], range[1]);
        System.out.printf("flink: rows=%d seconds=%.3f first_write_ms=%d%n", rowsRead, seconds, firstWriteMs);
        if (written != rowsRead) {
            System.err.printf("flink: error: %d rows read but %d lines reached the sink%n", rowsRead, written);
            System.exit(1);
        }
    }

    private static long longAcc(JobExecutionResult r, String name, long dflt) {
        Object v = r.getAccumulatorResult(name);
        return v == null ? dflt : ((Number) v).longValue();
    }

    /** MIN(id), MAX(id); {1, 0} (no chunk) for an empty table. */
    static long[] idRange(String url, String table) throws SQLException {
        try (Connection c = DriverManager.getConnection(url);
             Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT MIN(id), MAX(id) FROM " + quote(table))) {
            rs.next();
            long min = rs.getLong(1);
            if (rs.wasNull()) {
                return new long[] {1, 0};
            }
            return new long[] {min, rs.getLong(2)};
        }
    }

    static String quote(String table) {
        if (!table.matches("[A-Za-z_][A-Za-z0-9_]{0,63}")) {
            throw new IllegalArgumentException("invalid table name: " + table);
        }
        return "`" + table + "`";
    }

    // ------------------------------------------------------------------ record ---

    /** One row. A POJO (public fields, no-arg constructor) so Flink serializes it without Kryo. */
    public static class SensorRow {
        /** Marks a NULL status (TINYINT cannot hold it). NULL floats are NaN (MariaDB stores no NaN). */
        public static final int NULL_INT = Integer.MIN_VALUE;

        public String deviceId;
        public String site;
        public long tsMillis;
        public double temperature;
        public double humidity;
        public double pressure;
        public int status;

        public SensorRow() {}
    }

    // ------------------------------------------------------------------ source ---

    /**
     * Reads [min, max] in chunks of {@code chunkRows} ids; subtask k of P reads chunks
     * k, k+P, k+2P, ... over its own connection, one streaming SELECT per chunk.
     */
    public static class JdbcRangeSource extends RichParallelSourceFunction<SensorRow> {
        private final String url;
        private final String table;
        private final long minId;
        private final long maxId;
        private final long chunkRows;
        private final int fetchSize;
        private volatile boolean running = true;
        private final LongCounter rowCounter = new LongCounter();

        JdbcRangeSource(String url, String table, long minId, long maxId, long chunkRows, int fetchSize) {
            this.url = url;
            this.table = table;
            this.minId = minId;
            this.maxId = maxId;
            this.chunkRows = chunkRows;
            this.fetchSize = fetchSize;
        }

        @Override
        public void open(Configuration parameters) throws Exception {
            getRuntimeContext().addAccumulator(ROWS, rowCounter);
        }

        @Override
        public void run(SourceContext<SensorRow> ctx) throws Exception {
            int k = getRuntimeContext().getIndexOfThisSubtask();
            int p = getRuntimeContext().getNumberOfParallelSubtasks();
            if (maxId < minId) {
                return;
            }
            long chunks = (maxId - minId) / chunkRows + 1;
            String sql = "SELECT device_id, site, ts, temperature, humidity, pressure, status FROM "
                    + quote(table) + " WHERE id >= ? AND id < ?";
            try (Connection conn = DriverManager.getConnection(url);
                 PreparedStatement ps = conn.prepareStatement(sql, ResultSet.TYPE_FORWARD_ONLY,
                         ResultSet.CONCUR_READ_ONLY)) {
                // MariaDB Connector/J: a fetch size > 0 streams the result set (rows are pulled
                // from the socket fetchSize at a time) instead of buffering the whole chunk.
                // --fetch-size 0 leaves the driver default: the whole chunk is read into memory.
                if (fetchSize > 0) {
                    ps.setFetchSize(fetchSize);
                }
                for (long c = k; c < chunks && running; c += p) {
                    long lo = minId + c * chunkRows;
                    long hi = Math.min(lo + chunkRows, maxId + 1); // exclusive
                    ps.setLong(1, lo);
                    ps.setLong(2, hi);
                    long n = 0;
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            SensorRow r = readRow(rs);
                            synchronized (ctx.getCheckpointLock()) {
                                ctx.collect(r);
                            }
                            n++;
                            if ((n & 4095) == 0 && !running) {
                                break;
                            }
                        }
                    }
                    rowCounter.add(n);
                }
            }
        }

        private static SensorRow readRow(ResultSet rs) throws SQLException {
            SensorRow r = new SensorRow();
            r.deviceId = rs.getString(1);
            r.site = rs.getString(2);
            LocalDateTime ts = rs.getObject(3, LocalDateTime.class); // DATETIME holds UTC
            r.tsMillis = ts.toEpochSecond(ZoneOffset.UTC) * 1000 + ts.getNano() / 1_000_000;
            double t = rs.getDouble(4);
            r.temperature = rs.wasNull() ? Double.NaN : t;
            float h = rs.getFloat(5);
            // FLOAT as the number MariaDB shows (41.3, not 41.29999923706055), as tsmig does.
            r.humidity = rs.wasNull() ? Double.NaN : Double.parseDouble(Float.toString(h));
            String pr = rs.getString(6); // DECIMAL → its text → double
            r.pressure = pr == null ? Double.NaN : Double.parseDouble(pr);
            int s = rs.getInt(7);
            r.status = rs.wasNull() ? SensorRow.NULL_INT : s;
            return r;
        }

        @Override
        public void cancel() {
            running = false;
        }
    }

    // ----------------------------------------------------------------- encoder ---

    /** SensorRow → one line of InfluxDB line protocol (no trailing newline), as tsmig writes it. */
    public static class LineEncoder extends RichMapFunction<SensorRow, String> {
        private transient StringBuilder sb;

        @Override
        public void open(Configuration parameters) {
            sb = new StringBuilder(160);
        }

        @Override
        public String map(SensorRow r) {
            StringBuilder b = sb;
            b.setLength(0);
            b.append("sensors");
            b.append(",device_id=");
            appendTagValue(b, r.deviceId);
            b.append(",site=");
            appendTagValue(b, r.site);
            char sep = ' ';
            if (!Double.isNaN(r.temperature)) {
                b.append(sep).append("temperature=");
                appendFloat(b, r.temperature);
                sep = ',';
            }
            if (!Double.isNaN(r.humidity)) {
                b.append(sep).append("humidity=");
                appendFloat(b, r.humidity);
                sep = ',';
            }
            if (!Double.isNaN(r.pressure)) {
                b.append(sep).append("pressure=");
                appendFloat(b, r.pressure);
                sep = ',';
            }
            if (r.status != SensorRow.NULL_INT) {
                b.append(sep).append("status=").append(r.status).append('i');
                sep = ',';
            }
            if (sep == ' ') {
                throw new IllegalStateException("row of " + r.deviceId + " has no non-NULL field");
            }
            b.append(' ').append(r.tsMillis);
            return b.toString();
        }
    }

    /** Tag keys and values: ',', '=' and ' ' take a backslash. Empty values cannot be written. */
    static void appendTagValue(StringBuilder b, String v) {
        if (v.isEmpty()) {
            throw new IllegalArgumentException("empty tag value");
        }
        for (int i = 0; i < v.length(); i++) {
            char ch = v.charAt(i);
            if (ch == ',' || ch == '=' || ch == ' ') {
                b.append('\\');
            } else if (ch == '\n' || ch == '\r') {
                throw new IllegalArgumentException("line break in tag value " + v);
            }
            b.append(ch);
        }
    }

    /**
     * Appends {@code d} as Go's {@code strconv.FormatFloat(d, 'g', -1, 64)} (what tsmig and
     * InfluxData's encoder write): shortest round-trip digits, exponent form when the decimal
     * exponent is below -4 or at least 6 (1e+06). Java's Double.toString gives the digits (on
     * Java 17 not always the very shortest in rare cases, JDK-4511638, but always round-trip).
     */
    static void appendFloat(StringBuilder b, double d) {
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            throw new IllegalArgumentException(d + " cannot be written to InfluxDB");
        }
        if (d == 0.0) {
            b.append(1.0 / d < 0 ? "-0" : "0");
            return;
        }
        String s = Double.toString(d);
        double a = Math.abs(d);
        if (a >= 1e-3 && a < 1e6) {
            // Java writes plain notation here, as Go does: drop a trailing ".0".
            if (s.endsWith(".0")) {
                b.append(s, 0, s.length() - 2);
            } else {
                b.append(s);
            }
            return;
        }
        int i = 0;
        if (s.charAt(0) == '-') {
            b.append('-');
            i = 1;
        }
        int e = s.indexOf('E');
        String mant = e < 0 ? s.substring(i) : s.substring(i, e);
        int exp10 = e < 0 ? 0 : Integer.parseInt(s.substring(e + 1));
        StringBuilder digits = new StringBuilder(24);
        int point = -1;
        for (int j = 0; j < mant.length(); j++) {
            char ch = mant.charAt(j);
            if (ch == '.') {
                point = digits.length();
            } else {
                digits.append(ch);
            }
        }
        int dp = (point < 0 ? digits.length() : point) + exp10;
        int first = 0;
        while (first < digits.length() && digits.charAt(first) == '0') {
            first++;
            dp--;
        }
        int n = digits.length();
        while (n > first && digits.charAt(n - 1) == '0') {
            n--;
        }
        String dg = digits.substring(first, n);
        int exp = dp - 1;
        if (exp < -4 || exp >= 6) {
            b.append(dg.charAt(0));
            if (dg.length() > 1) {
                b.append('.').append(dg, 1, dg.length());
            }
            b.append('e').append(exp < 0 ? '-' : '+');
            int ae = Math.abs(exp);
            if (ae < 10) {
                b.append('0');
            }
            b.append(ae);
        } else if (dp <= 0) {
            b.append("0.");
            for (int j = 0; j < -dp; j++) {
                b.append('0');
            }
            b.append(dg);
        } else if (dp >= dg.length()) {
            b.append(dg);
            for (int j = dg.length(); j < dp; j++) {
                b.append('0');
            }
        } else {
            b.append(dg, 0, dp).append('.').append(dg, dp, dg.length());
        }
    }

    // ------------------------------------------------------------------- sinks ---

    /**
     * Gathers {@code batchSize} lines per POST to InfluxDB 1.x {@code /write}; flushes the
     * remainder at end of input ({@link #finish}) and on checkpoints. A non-2xx answer throws,
     * which fails the job (restart strategy none).
     */
    public static class InfluxSink extends RichSinkFunction<String> implements CheckpointedFunction {
        private final String writeUrl;
        private final int batchSize;
        private final long startNanos;
        private transient HttpClient client;
        private transient URI uri;
        private transient StringBuilder batch;
        private transient int pending;
        private transient boolean wroteOnce;
        private final LongCounter written = new LongCounter();
        private final LongCounter posts = new LongCounter();
        private final LongMinimum firstWrite = new LongMinimum();

        InfluxSink(String writeUrl, int batchSize, long startNanos) {
            this.writeUrl = writeUrl;
            this.batchSize = batchSize;
            this.startNanos = startNanos;
        }

        @Override
        public void open(Configuration parameters) {
            getRuntimeContext().addAccumulator(WRITTEN, written);
            getRuntimeContext().addAccumulator(POSTS, posts);
            getRuntimeContext().addAccumulator(FIRST_WRITE, firstWrite);
            client = HttpClient.newBuilder()
                    .version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(Duration.ofSeconds(10))
                    .build();
            uri = URI.create(writeUrl);
            batch = new StringBuilder(batchSize * 128);
        }

        @Override
        public void invoke(String line, Context context) throws Exception {
            batch.append(line).append('\n');
            if (++pending >= batchSize) {
                flush();
            }
        }

        private void flush() throws IOException, InterruptedException {
            if (pending == 0) {
                return;
            }
            byte[] body = batch.toString().getBytes(StandardCharsets.UTF_8);
            HttpRequest req = HttpRequest.newBuilder(uri)
                    .timeout(Duration.ofSeconds(60))
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(body))
                    .build();
            HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
            int status = resp.statusCode();
            if (status < 200 || status > 299) {
                throw new IOException("InfluxDB answered " + status + " to a write of " + pending
                        + " lines: " + resp.body());
            }
            if (!wroteOnce) {
                wroteOnce = true;
                firstWrite.add(System.nanoTime());
            }
            written.add(pending);
            posts.add(1);
            batch.setLength(0);
            pending = 0;
        }

        @Override
        public void finish() throws Exception {
            flush();
        }

        @Override
        public void snapshotState(FunctionSnapshotContext context) throws Exception {
            flush();
        }

        @Override
        public void initializeState(FunctionInitializationContext context) {}

        @Override
        public void close() {
            client = null; // java.net.http.HttpClient has no close() before Java 21
        }
    }

    /** Counts the lines and drops them. */
    public static class DiscardSink extends RichSinkFunction<String> {
        private final LongCounter written = new LongCounter();
        private transient long n;

        @Override
        public void open(Configuration parameters) {
            getRuntimeContext().addAccumulator(WRITTEN, written);
        }

        @Override
        public void invoke(String line, Context context) {
            n++;
        }

        @Override
        public void finish() {
            written.add(n);
            n = 0;
        }
    }

    // -------------------------------------------------------------------- args ---

    static final class Args {
        int parallelism = 1;
        String sink = "influx";
        String db = "flinktest";
        String table = "sensor_readings";
        String jdbcUrl = "jdbc:mariadb://127.0.0.1:13306/factory?user=tsmig&password=tsmig";
        String influxUrl = "http://127.0.0.1:18086";
        long chunkRows = 50_000;
        int batchSize = 5_000;
        int fetchSize = 1_000;

        static final String USAGE = "usage: MysqlToInflux [--parallelism N] [--sink influx|discard] [--db NAME]"
                + " [--table NAME] [--jdbc-url URL] [--influx-url URL] [--chunk-rows N] [--batch-size N]"
                + " [--fetch-size N]";

        static Args parse(String[] argv) {
            Map<String, String> m = new HashMap<>();
            for (int i = 0; i < argv.length; i++) {
                String a = argv[i];
                if (a.equals("-h") || a.equals("--help")) {
                    System.out.println(USAGE);
                    System.exit(0);
                }
                if (!a.startsWith("--")) {
                    fail("unexpected argument " + a);
                }
                int eq = a.indexOf('=');
                if (eq > 0) {
                    m.put(a.substring(2, eq), a.substring(eq + 1));
                } else {
                    if (i + 1 >= argv.length) {
                        fail(a + " needs a value");
                    }
                    m.put(a.substring(2), argv[++i]);
                }
            }
            Args r = new Args();
            for (Map.Entry<String, String> e : m.entrySet()) {
                String v = e.getValue();
                switch (e.getKey()) {
                    case "parallelism": r.parallelism = positive(e.getKey(), v); break;
                    case "sink": r.sink = v; break;
                    case "db": r.db = v; break;
                    case "table": r.table = v; break;
                    case "jdbc-url": r.jdbcUrl = v; break;
                    case "influx-url": r.influxUrl = v; break;
                    case "chunk-rows": r.chunkRows = positive(e.getKey(), v); break;
                    case "batch-size": r.batchSize = positive(e.getKey(), v); break;
                    case "fetch-size": r.fetchSize = v.equals("0") ? 0 : positive(e.getKey(), v); break;
                    default: fail("unknown option --" + e.getKey());
                }
            }
            if (!r.sink.equals("influx") && !r.sink.equals("discard")) {
                fail("--sink must be influx or discard, got " + r.sink);
            }
            quote(r.table);
            return r;
        }

        static int positive(String k, String v) {
            try {
                int n = Integer.parseInt(v);
                if (n > 0) {
                    return n;
                }
            } catch (NumberFormatException ignored) {
                // fall through
            }
            fail("--" + k + " needs a positive integer, got " + v);
            return 0;
        }

        static void fail(String msg) {
            System.err.println("flink: " + msg);
            System.err.println(USAGE);
            System.exit(2);
        }
    }
}

-- The demo sensor table: scripts/load-sample.sh loads it, bench/scaling.py (from its kit,
-- without the repository) too. @TABLE@ is the table's name. The statement after the
-- `-- rows` line is run once per slice of ids @LO@..@HI@: rows are generated server-side
-- from the SEQUENCE engine and are a pure function of n, which lets tests predict any
-- row's values. Device = n MOD 1000 and second = n DIV 1000, so every device reports once
-- per second and (device_id, ts) is unique.
CREATE TABLE `@TABLE@` (
  id BIGINT NOT NULL PRIMARY KEY,
  device_id VARCHAR(64) NOT NULL,
  site VARCHAR(32) NOT NULL,
  ts DATETIME(3) NOT NULL,
  temperature DOUBLE NULL,
  humidity FLOAT NULL,
  pressure DECIMAL(8,2) NULL,
  status TINYINT NULL,
  KEY device_ts (device_id, ts)
) ENGINE=InnoDB;
-- rows
INSERT INTO `@TABLE@`
  (id, device_id, site, ts, temperature, humidity, pressure, status)
SELECT
  seq,
  CONCAT('dev-', LPAD(seq MOD 1000, 4, '0')),
  CONCAT('site-', (seq MOD 1000) MOD 7),
  TIMESTAMPADD(SECOND, seq DIV 1000, '2026-01-01 00:00:00'),
  ROUND(20 + 5 * SIN(seq / 1000.0) + (seq MOD 13) / 10.0, 3),
  IF(seq MOD 97 = 0, NULL, 40 + (seq MOD 50)),
  1000 + (seq MOD 300) / 10,
  seq MOD 4
FROM seq_@LO@_to_@HI@;

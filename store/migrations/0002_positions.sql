-- Telemetry fixes: a hypertable by fix time; (device_id, seq, ts) is the natural key, so a
-- replayed or redelivered fix is harmless (the detection core's dedup key, same ts).
CREATE TABLE positions (
    ts           timestamptz NOT NULL,
    vehicle_id   text NOT NULL,
    device_id    text NOT NULL,
    org          text NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    lat          double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon          double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    speed_kmh    real NOT NULL CHECK (speed_kmh >= 0),
    heading      real NOT NULL CHECK (heading >= 0 AND heading < 360),
    ignition     boolean NOT NULL,
    fix_valid    boolean,
    alarm        bigint,
    odometer_km  double precision,
    alt_m        real,
    sats         smallint,
    -- When the bridge put the fix into Kafka (the record's timestamp): arrival, not event time.
    received_at  timestamptz NOT NULL,
    CONSTRAINT positions_natural_key UNIQUE (device_id, seq, ts),
    CONSTRAINT positions_not_null_island CHECK (lat <> 0 OR lon <> 0)
);
-- Lets a set-based statement refuse a row with a contract reason (22023 invalid_parameter_value:
-- the sink treats it as that record's fault and dead-letters it).
CREATE FUNCTION contract_violation(message text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = message;
END
$$;

SELECT create_hypertable('positions', by_range('ts', INTERVAL '1 day'));
CREATE INDEX positions_vehicle_ts ON positions (vehicle_id, ts DESC);

GRANT SELECT, INSERT ON positions TO fw_writer;
GRANT SELECT ON positions TO fw_reader;
-- Scoped roles get COLUMN privileges, not a table privilege. TimescaleDB copies a hypertable's
-- table ACL onto every new chunk, and chunks have no row-level security: with a table grant a
-- city account could read `_timescaledb_internal._hyper_*_chunk` directly and see every org.
-- Column ACLs are not copied to new chunks, while queries through the hypertable need no chunk
-- privilege (checked in tests/store/test_access.py; `db maintain` also revokes any chunk grant).
-- A migration that adds a column to positions must grant it to fw_scoped the same way.
GRANT SELECT (ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, heading, ignition, fix_valid, alarm,
              odometer_km, alt_m, sats, received_at) ON positions TO fw_scoped;

ALTER TABLE positions ENABLE ROW LEVEL SECURITY;
CREATE POLICY positions_write ON positions TO fw_writer USING (true) WITH CHECK (true);
CREATE POLICY positions_read ON positions FOR SELECT TO fw_reader USING (true);
CREATE POLICY positions_scoped ON positions FOR SELECT TO fw_scoped
    USING (org = ANY ((SELECT visible_orgs(current_user))::text[]));

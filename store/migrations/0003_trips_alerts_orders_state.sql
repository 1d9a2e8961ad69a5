-- Results of the stream workers and dispatch orders. Every row carries the `revision` it was
-- written from: the sink only replaces a row with a newer revision, so replays are harmless.

CREATE TABLE orders (
    order_id          text PRIMARY KEY,
    vehicle_id        text NOT NULL,
    org               text NOT NULL,
    start_at          timestamptz NOT NULL,
    end_at            timestamptz NOT NULL CHECK (end_at > start_at),
    purpose           text NOT NULL DEFAULT '',
    destination       text NOT NULL DEFAULT '',
    destination_area  jsonb,
    status            text NOT NULL CHECK (status IN ('approved', 'cancelled')),
    -- Orders carry no revision: their topic is keyed by order_id, so Kafka's offset orders them.
    revision          bigint NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_vehicle_start ON orders (vehicle_id, start_at);
CREATE INDEX orders_org_start ON orders (org, start_at);

CREATE TABLE trips (
    trip_id        text PRIMARY KEY,
    vehicle_id     text NOT NULL,
    org            text NOT NULL,
    start_at       timestamptz NOT NULL,
    end_at         timestamptz NOT NULL,
    start_lat      double precision NOT NULL,
    start_lon      double precision NOT NULL,
    end_lat        double precision NOT NULL,
    end_lon        double precision NOT NULL,
    distance_m     double precision NOT NULL,
    max_speed_kmh  real NOT NULL,
    fix_count      integer NOT NULL,
    order_id       text,
    revision       bigint NOT NULL,
    -- A retracted trip (late data showed it did not happen that way) stays, marked.
    retracted      boolean NOT NULL DEFAULT false,
    retract_reason text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trips_vehicle_start ON trips (vehicle_id, start_at DESC);
CREATE INDEX trips_org_start ON trips (org, start_at DESC);

CREATE TABLE alerts (
    alert_id        text PRIMARY KEY,
    type            text NOT NULL,
    severity        text NOT NULL DEFAULT 'yellow' CHECK (severity IN ('yellow', 'red')),
    vehicle_id      text NOT NULL,
    org             text NOT NULL,
    start_at        timestamptz NOT NULL,
    end_at          timestamptz,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    raised_at       timestamptz NOT NULL,
    due_at          timestamptz NOT NULL,
    -- open -> acknowledged -> closed is the managers' workflow; retracted comes from detection
    -- (late data or a late order) and is kept for audit.
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'closed', 'retracted')),
    details         jsonb NOT NULL DEFAULT '{}',
    trip_id         text,
    revision        bigint NOT NULL,
    retract_reason  text,
    -- The approved dispatch order that exempted it, when that was the reason.
    retract_order_id text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_org_raised ON alerts (org, raised_at DESC);
CREATE INDEX alerts_vehicle_start ON alerts (vehicle_id, start_at DESC);
CREATE INDEX alerts_open_due ON alerts (due_at) WHERE status IN ('open', 'acknowledged');

-- Every status change of an alert: who, when, why. Detection's own changes carry the revision
-- (unique, so a replay adds nothing); people's changes (acknowledge, close) have none.
CREATE TABLE alert_events (
    event_id     bigserial PRIMARY KEY,
    alert_id     text NOT NULL REFERENCES alerts (alert_id),
    org          text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    kind         text NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    reason       text,
    revision     bigint,
    CONSTRAINT alert_events_revision UNIQUE (alert_id, revision)
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, at);

-- The live map's source: one row per vehicle, replaced only by a newer state (the compacted
-- topic is keyed by vehicle, so its offset orders one vehicle's states: that is the revision).
CREATE TABLE vehicle_state (
    vehicle_id      text PRIMARY KEY,
    org             text NOT NULL,
    ts              timestamptz NOT NULL,
    lat             double precision NOT NULL,
    lon             double precision NOT NULL,
    speed_kmh       real NOT NULL,
    ignition        boolean NOT NULL,
    status          text NOT NULL CHECK (status IN ('moving', 'parked', 'offline', 'alerting')),
    open_alert_ids  text[] NOT NULL DEFAULT '{}',
    -- When the worker computed this state (its wall clock); stored_at: when the sink wrote it.
    computed_at     timestamptz NOT NULL,
    revision        bigint NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicle_state_org ON vehicle_state (org);

GRANT SELECT, INSERT, UPDATE ON orders, trips, alerts, vehicle_state TO fw_writer;
GRANT SELECT, INSERT ON alert_events TO fw_writer;
GRANT USAGE ON SEQUENCE alert_events_event_id_seq TO fw_writer;
GRANT SELECT ON orders, trips, alerts, alert_events, vehicle_state TO fw_reader, fw_scoped;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['orders', 'trips', 'alerts', 'alert_events', 'vehicle_state'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I TO fw_writer USING (true) WITH CHECK (true)',
                       t || '_write', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fw_reader USING (true)', t || '_read', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fw_scoped '
                       'USING (org = ANY ((SELECT visible_orgs(current_user))::text[]))', t || '_scoped', t);
    END LOOP;
END
$$;

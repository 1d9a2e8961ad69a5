-- Notifications (a delivery log that is also the outbox), the escalation ledger and complaints.
--
-- notify_deliveries: one row per (alert, revision, route, purpose). The notifier inserts the row
-- before anything is sent (ON CONFLICT DO NOTHING), so an alert redelivered on the topic, or a
-- notifier restarted mid-batch, never makes a second row; the row then carries every attempt.
CREATE TABLE notify_deliveries (
    delivery_id      bigserial PRIMARY KEY,
    alert_id         text NOT NULL,
    revision         bigint NOT NULL,
    -- '<route>/<channel>' from the routing YAML: one message per route and channel.
    route            text NOT NULL,
    channel_type     text NOT NULL,
    -- alert: the alert's own org routes; escalation: the parent org's routes of an overdue alert;
    -- retraction: detection withdrew an alert that was already delivered on this route.
    purpose          text NOT NULL CHECK (purpose IN ('alert', 'escalation', 'retraction')),
    org              text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('yellow', 'red')),
    payload          jsonb NOT NULL,
    -- pending: send when next_attempt_at comes; held: inside the route's quiet hours until
    -- next_attempt_at; sent; failed: gave up after max attempts; cancelled: the alert was
    -- retracted before this message went out.
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'held', 'sent', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CONSTRAINT notify_deliveries_once UNIQUE (alert_id, revision, route, purpose)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_attempt_at) WHERE status IN ('pending', 'held');
CREATE INDEX notify_deliveries_alert ON notify_deliveries (alert_id);

-- An overdue alert escalates once: the unique index is the "once", whoever races for it.
CREATE UNIQUE INDEX alert_events_escalated_once ON alert_events (alert_id) WHERE kind = 'escalated';

-- Citizens' complaints (12345 hotline): a case due in 3 days, with the evidence it was given.
CREATE TABLE complaints (
    complaint_id     bigserial PRIMARY KEY,
    vehicle_id       text NOT NULL,
    org              text NOT NULL,
    observed_at      timestamptz NOT NULL,
    -- Always WGS-84 (converted on entry); what the caller gave is kept beside it.
    lat              double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon              double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    given_datum      text NOT NULL CHECK (given_datum IN ('WGS-84', 'GCJ-02')),
    given_lat        double precision NOT NULL,
    given_lon        double precision NOT NULL,
    text             text NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    due_at           timestamptz NOT NULL,
    -- The evidence report's directory and the sha256 of its manifest.
    evidence_path    text,
    evidence_sha256  text
);
CREATE INDEX complaints_vehicle ON complaints (vehicle_id, observed_at);
CREATE INDEX complaints_open_due ON complaints (due_at) WHERE status = 'open';

GRANT SELECT ON notify_deliveries, complaints TO fw_reader, fw_scoped;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['notify_deliveries', 'complaints'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fw_reader USING (true)', t || '_read', t);
        EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO fw_scoped '
                       'USING (org = ANY ((SELECT visible_orgs(current_user))::text[]))', t || '_scoped', t);
    END LOOP;
END
$$;

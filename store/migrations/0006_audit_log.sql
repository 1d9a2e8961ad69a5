-- Append-only audit log: every evidence query / report and every workflow action, with who, what,
-- when and from where (MLPS 2.0 level 3, GB/T 22239-2019, asks for a security audit trail that
-- cannot be altered). Rows are written by store/audit.py `record`, called by evidence/ and workflow/.
--
-- Append-only twice over: no role is granted UPDATE, DELETE or TRUNCATE, and triggers refuse them
-- for everyone, the table's owner included (only a superuser disabling the triggers gets past,
-- and that leaves its own trace in the server log when log_statement covers DDL).
CREATE TABLE audit_log (
    audit_id     bigserial PRIMARY KEY,
    -- clock_timestamp: the moment of the row, not the start of a long transaction.
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The person (--by, or the operating-system user of the tool) and the database login used.
    actor        text NOT NULL CHECK (btrim(actor) <> ''),
    db_user      name NOT NULL DEFAULT session_user,
    -- e.g. evidence.report, alert.acknowledged, alert.closed, alert.reopened, complaint.opened.
    action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    -- What it was about: an alert id, a complaint id, a plate or a place.
    target       text,
    detail       jsonb NOT NULL DEFAULT '{}',
    -- From where: the connection's client address as the server saw it (NULL over a unix
    -- socket) and the host name the tool reported for itself.
    client_addr  inet DEFAULT inet_client_addr(),
    client_host  text NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target, at);

CREATE FUNCTION audit_log_refuse() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; record a correcting action instead';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();

REVOKE ALL ON audit_log FROM PUBLIC;
-- Writers append; supervisors (fw_reader) read. Scoped city accounts do not see the log.
GRANT INSERT ON audit_log TO fw_writer;
GRANT USAGE ON SEQUENCE audit_log_audit_id_seq TO fw_writer;
GRANT SELECT ON audit_log TO fw_reader;

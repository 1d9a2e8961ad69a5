-- Group roles, the registry (org tree, vehicles, devices) and the org scope behind row-level security.
--
-- fw_writer  : the sink (insert/update data tables, sees every row)
-- fw_reader  : dashboards (read-only, sees every row)
-- fw_scoped  : per-city / per-unit accounts (read-only, see only their org subtree)
-- Login roles are members of these; `fleetwatch db migrate` provisions the service logins and
-- `fleetwatch db account add` the per-org ones.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['fw_writer', 'fw_reader', 'fw_scoped'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO fw_writer, fw_reader, fw_scoped;

CREATE TABLE orgs (
    org_id      text PRIMARY KEY,
    name        text NOT NULL,
    parent_id   text REFERENCES orgs (org_id),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM org_id)
);
CREATE INDEX orgs_parent ON orgs (parent_id);

-- Fixes of a vehicle nobody registered still land (detection calls their org 'unregistered').
INSERT INTO orgs (org_id, name) VALUES ('unregistered', 'unregistered vehicles');

CREATE TABLE vehicles (
    vehicle_id  text PRIMARY KEY,
    org         text NOT NULL REFERENCES orgs (org_id),
    depot       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicles_org ON vehicles (org);

CREATE TABLE devices (
    device_id   text PRIMARY KEY,
    vehicle_id  text NOT NULL REFERENCES vehicles (vehicle_id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_vehicle ON devices (vehicle_id);

-- Which org subtree a scoped role may see. A login role sees the union of the subtrees of every
-- row whose role it is a member of (directly or through a group role).
CREATE TABLE org_accounts (
    role_name   text PRIMARY KEY,
    org_id      text NOT NULL REFERENCES orgs (org_id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The org ids visible to ``who``: every org under the orgs granted to it. SECURITY DEFINER so a
-- scoped role need not read org_accounts; the policies call it once per query (an InitPlan).
CREATE FUNCTION visible_orgs(who name) RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH RECURSIVE tree (org_id) AS (
        SELECT a.org_id FROM org_accounts a WHERE pg_has_role(who, a.role_name, 'USAGE')
        UNION
        SELECT o.org_id FROM orgs o JOIN tree t ON o.parent_id = t.org_id
    )
    SELECT coalesce(array_agg(org_id), '{}') FROM tree
$$;
REVOKE ALL ON FUNCTION visible_orgs(name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION visible_orgs(name) TO fw_scoped;

GRANT SELECT ON orgs, vehicles, devices TO fw_writer, fw_reader, fw_scoped;

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
CREATE POLICY orgs_all ON orgs FOR SELECT TO fw_writer, fw_reader USING (true);
CREATE POLICY orgs_scoped ON orgs FOR SELECT TO fw_scoped
    USING (org_id = ANY ((SELECT visible_orgs(current_user))::text[]));

ALTER TABLE vehicles ENABLE ROW LEVEL SECURITY;
CREATE POLICY vehicles_all ON vehicles FOR SELECT TO fw_writer, fw_reader USING (true);
CREATE POLICY vehicles_scoped ON vehicles FOR SELECT TO fw_scoped
    USING (org = ANY ((SELECT visible_orgs(current_user))::text[]));

ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
CREATE POLICY devices_all ON devices FOR SELECT TO fw_writer, fw_reader USING (true);
-- Through vehicles, whose own policy applies to the subquery.
CREATE POLICY devices_scoped ON devices FOR SELECT TO fw_scoped
    USING (EXISTS (SELECT 1 FROM vehicles v WHERE v.vehicle_id = devices.vehicle_id));

-- What the dashboards need beyond the raw tables: the city an org belongs to (their city / unit
-- filters) and a daily per-org KPI rollup kept by `fleetwatch db maintain` (the Apache edition
-- has no continuous aggregates), so KPI panels never scan positions.

-- The level-1 ancestor (child of a root) of an org: its city. NULL for a root ('js',
-- 'unregistered'). SECURITY DEFINER because a scoped account cannot see its own ancestors; it
-- learns only the id of the city above an org it can already see.
CREATE FUNCTION org_city(org text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    WITH RECURSIVE up (org_id, parent_id, depth) AS (
        SELECT o.org_id, o.parent_id, 0 FROM orgs o WHERE o.org_id = org
        UNION ALL
        SELECT p.org_id, p.parent_id, u.depth + 1 FROM orgs p JOIN up u ON p.org_id = u.parent_id
        WHERE u.depth < 32
    )
    -- The ancestor whose parent is the root: second from the top of the chain.
    SELECT org_id FROM up WHERE parent_id IS NOT NULL ORDER BY depth DESC LIMIT 1
$$;
REVOKE ALL ON FUNCTION org_city(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION org_city(text) TO fw_writer, fw_reader, fw_scoped;

-- One row per (Asia/Shanghai day, org). Rebuilt for recent days by `fleetwatch db maintain`.
CREATE TABLE kpi_daily (
    day                  date NOT NULL,
    org                  text NOT NULL,
    vehicles_registered  integer NOT NULL DEFAULT 0,
    vehicles_reporting   integer NOT NULL DEFAULT 0,
    fixes                bigint NOT NULL DEFAULT 0,
    trips                integer NOT NULL DEFAULT 0,
    km_driven            double precision NOT NULL DEFAULT 0,
    off_hours_trips      integer NOT NULL DEFAULT 0,
    off_hours_km         double precision NOT NULL DEFAULT 0,
    alerts_raised        integer NOT NULL DEFAULT 0,
    alerts_closed        integer NOT NULL DEFAULT 0,
    -- Seconds from raised to closed of each alert closed that day: medians over any range.
    close_seconds        double precision[] NOT NULL DEFAULT '{}',
    refreshed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, org)
);
CREATE INDEX kpi_daily_org_day ON kpi_daily (org, day);

GRANT SELECT ON kpi_daily TO fw_reader, fw_scoped;
ALTER TABLE kpi_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY kpi_daily_read ON kpi_daily FOR SELECT TO fw_reader USING (true);
CREATE POLICY kpi_daily_scoped ON kpi_daily FOR SELECT TO fw_scoped
    USING (org = ANY ((SELECT visible_orgs(current_user))::text[]));

-- When the sink's transaction stored the fix (its start: one value per batch). With received_at
-- (the bridge's Kafka timestamp) it gives the pipeline-health dashboard the sink's rate and lag.
-- The sink's INSERT names its columns, so the default fills it; granted to scoped roles as a
-- column, like the others (0002).
ALTER TABLE positions ADD COLUMN stored_at timestamptz NOT NULL DEFAULT now();
GRANT SELECT (stored_at) ON positions TO fw_scoped;
-- TimescaleDB propagates that GRANT to the chunks that exist now (measured), and chunks have no
-- row-level security: take it back from every existing chunk (new chunks do not get it).
DO $$
DECLARE
    chunk regclass;
BEGIN
    FOR chunk IN SELECT show_chunks('positions') LOOP
        EXECUTE format('REVOKE ALL ON TABLE %s FROM fw_scoped', chunk);
    END LOOP;
END
$$;

"""Every dashboard query, interpolated as Grafana would, against TimescaleDB filled through the
pipeline (simulator -> detection core -> Kafka -> sink), as the read-only dashboards login and as
a city account (row-level security)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dashboards.build import load_committed
from dashboards.check import QueryResult, connect_as, run_dashboard
from dashboards.demo import load
from dashboards.spec import Json
from fleetwatch.settings import Settings
from simulator._dataset import build_fleet
from simulator._scenarios import is_workday
from store.db import connect
from store.roles import add_org_account
from store.rollups import refresh_kpi_daily

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")
LIVE_BOARDS = ("fw-live-map", "fw-pipeline")


@dataclass
class Loaded:
    settings: Settings
    past_day: datetime  # 00:00 Asia/Shanghai of the working day the alerts come from
    now: datetime
    namespace: str
    vehicle: str  # one with an alert (and trips) that day
    alert_id: str
    zj_vehicle: str
    acknowledged: str
    closed: str

    def window(self, uid: str) -> tuple[datetime, datetime]:
        if uid in LIVE_BOARDS:
            return self.now - timedelta(hours=7), self.now + timedelta(minutes=1)
        return self.past_day - timedelta(hours=1), self.past_day + timedelta(days=1, hours=1)

    def overrides(self, uid: str) -> dict[str, list[str]]:
        return {"vehicle": [self.vehicle], "alert": [self.alert_id]} if uid == "fw-track-replay" else {}


def _recent_past_workday(now: datetime) -> datetime:
    day = now.astimezone(SHANGHAI).date() - timedelta(days=4)  # older than the 3-day SLA: overdue alerts
    while not is_workday(day):
        day -= timedelta(days=1)
    return datetime.combine(day, datetime.min.time(), SHANGHAI)


def _workflow(settings: Settings, acknowledged: str, closed: str) -> None:
    """What a fleet manager does through issue 12's workflow (not on this branch yet): acknowledge one
    alert, acknowledge and close another; status plus an alert_events row each, as the schema says."""
    with connect(settings) as conn, conn.transaction():
        for alert_id, steps in (
            (acknowledged, [("open", "acknowledged", 2)]),
            (closed, [("open", "acknowledged", 1), ("acknowledged", "closed", 5)]),
        ):
            for old, new, hours in steps:
                conn.execute(
                    "INSERT INTO alert_events (alert_id, org, at, actor, kind, from_status, to_status, "
                    "reason) SELECT alert_id, org, raised_at + make_interval(hours => %s), 'manager-test', "
                    "%s, %s, %s, "
                    "'checked with the driver' FROM alerts WHERE alert_id = %s",
                    (hours, new, old, new, alert_id),
                )
                conn.execute("UPDATE alerts SET status = %s WHERE alert_id = %s", (new, alert_id))


@pytest.fixture(scope="module")
def loaded(database: Settings) -> Iterator[Loaded]:
    tag = uuid.uuid4().hex[:8]
    namespace = f"G{tag[:5]}"
    now = datetime.now(UTC).replace(microsecond=0)
    past_day = _recent_past_workday(now)
    past = build_fleet(40, seed=5, start=past_day, duration=timedelta(days=1), mix=0.6, namespace=namespace)
    result = load(database, past, tag=f"{tag}-past")
    assert result.dead_letters == 0 and result.stored["alerts"] > 0 and result.stored["trips"] > 0
    live = build_fleet(
        40,
        seed=5,
        start=now - timedelta(hours=6),
        duration=timedelta(hours=6),
        mix=0.0,
        namespace=namespace,
        seq_base=10_000_000,
    )
    result = load(database, live, tag=f"{tag}-live", state_at=now)
    assert result.stored["vehicle_state"] == 40
    vehicles = {v.vehicle_id for v in past.world.vehicles}
    with connect(database) as conn:
        rows = conn.execute(
            "SELECT a.alert_id, a.vehicle_id FROM alerts a WHERE a.vehicle_id = ANY(%s) AND a.start_at >= %s "
            "AND EXISTS (SELECT 1 FROM trips t WHERE t.vehicle_id = a.vehicle_id AND t.start_at >= %s) "
            "ORDER BY a.trip_id IS NULL, a.alert_id",
            (list(vehicles), past_day, past_day),
        ).fetchall()
    assert len(rows) >= 3, rows
    _workflow(database, str(rows[1][0]), str(rows[2][0]))
    with connect(database) as conn:
        refresh_kpi_daily(conn, past_day.date() - timedelta(days=1), now.astimezone(SHANGHAI).date())
    zj = next(v.vehicle_id for v in past.world.vehicles if v.city == "js.zj")
    yield Loaded(
        database,
        past_day,
        now,
        namespace,
        str(rows[0][1]),
        str(rows[0][0]),
        zj,
        str(rows[1][0]),
        str(rows[2][0]),
    )


def _run_all(loaded: Loaded, user: str, password: str) -> dict[str, list[QueryResult]]:
    out = {}
    with connect_as(loaded.settings, user, password) as conn:
        for board in load_committed().values():
            start, end = loaded.window(board["uid"])
            out[board["uid"]] = run_dashboard(
                conn, board, start, end, loaded.overrides(board["uid"]), keep_rows=10**6
            )
    return out


@pytest.fixture(scope="module")
def as_reader(loaded: Loaded) -> dict[str, list[QueryResult]]:
    s = loaded.settings
    return _run_all(loaded, s.pg_dashboards_user, s.secret("pg_dashboards_password"))


def _find(results: list[QueryResult], prefix: str) -> QueryResult:
    return next(r for r in results if r.where.startswith(prefix))


def test_every_query_runs_as_the_read_only_login_with_the_columns_and_rows_its_panel_needs(
    as_reader: dict[str, list[QueryResult]],
) -> None:
    boards: dict[str, Json] = {b["uid"]: b for b in load_committed().values()}
    ran = 0
    for uid, results in as_reader.items():
        targets = sum(len(p["targets"]) for p in boards[uid]["panels"])
        annotations = sum(1 for a in boards[uid]["annotations"]["list"] if "target" in a)
        variables = sum(1 for v in boards[uid]["templating"]["list"] if v["type"] == "query")
        assert len(results) == targets + annotations + variables, uid
        for r in results:
            assert r.problems == [], f"{uid} / {r.where}: {r.problems}\n{r.sql}"
            ran += 1
    print(f"\n{ran} queries ran clean: " + ", ".join(f"{u} {len(rs)}" for u, rs in as_reader.items()))


def test_alert_counts_follow_the_workflow_and_the_sla(
    loaded: Loaded, as_reader: dict[str, list[QueryResult]]
) -> None:
    totals = _find(as_reader["fw-alerts-sla"], "Alerts raised in range by status")
    open_, acknowledged, closed, overdue = totals.values[0]
    assert acknowledged >= 1 and closed >= 1 and open_ >= 1
    assert overdue == open_ + acknowledged  # raised >= 4 days ago: every unhandled alert is overdue
    listing = _find(as_reader["fw-alerts-sla"], "Alerts (overdue first)")
    names = [c for c, _ in listing.columns]
    by_id = {row[names.index("alert_id")]: row for row in listing.values}
    assert by_id[loaded.closed][names.index("status")] == "closed"
    assert by_id[loaded.acknowledged][names.index("sla")] == "overdue"
    kpis = _find(as_reader["fw-fleet-kpis"], "Fleet in range")
    kpi_names = [c for c, _ in kpis.columns]
    assert kpis.values[0][kpi_names.index("median_hours_to_close")] is not None  # the closed alert: 5 h
    replay = _find(as_reader["fw-track-replay"], "Alert history")
    assert {row[2] for row in replay.values} >= {"detection"}  # actor column


def test_a_city_account_sees_only_its_city(loaded: Loaded, as_reader: dict[str, list[QueryResult]]) -> None:
    role = f"dash_nj_{loaded.namespace.lower()}"
    password = uuid.uuid4().hex
    with connect(loaded.settings) as conn:
        add_org_account(conn, role, "js.nj", password)
        org_of = dict(conn.execute("SELECT vehicle_id, org FROM vehicles").fetchall())
    as_city = _run_all(loaded, role, password)
    checked = 0
    for uid, results in as_city.items():
        assert _find(results, "variable city").rows == 1, uid
        for r in results:
            names = [c for c, _ in r.columns]
            orgs = {row[names.index("org")] for row in r.values} if "org" in names else set()
            # A row's own org decides what RLS shows; a registered vehicle's org must agree too.
            vehicles = (
                {row[names.index("vehicle_id")] for row in r.values} if "vehicle_id" in names else set()
            )
            orgs |= {org_of[v] for v in vehicles if v in org_of}
            assert all(str(o).startswith("js.nj") for o in orgs), (uid, r.where, orgs)
            checked += bool(orgs)
    assert checked >= 5  # live map vehicles and alerts, alerts by org and listed, KPIs per org
    # The same panel as the reader: exactly the Nanjing rows of it, and fewer than all.
    city_map = _find(as_city["fw-live-map"], "Vehicles and open alerts [geomap A]")
    all_map = _find(as_reader["fw-live-map"], "Vehicles and open alerts [geomap A]")
    org_index = [c for c, _ in all_map.columns].index("org")
    nanjing = [row for row in all_map.values if str(row[org_index]).startswith("js.nj")]
    assert city_map.rows == len(nanjing) < all_map.rows
    # A Zhenjiang vehicle's track is invisible to the Nanjing account, visible to the reader.
    with connect_as(loaded.settings, role, password) as conn:
        replay = next(b for b in load_committed().values() if b["uid"] == "fw-track-replay")
        start, end = loaded.window("fw-track-replay")
        route = _find(run_dashboard(conn, replay, start, end, {"vehicle": [loaded.zj_vehicle]}), "Route")
    assert route.rows == 0
    with connect_as(
        loaded.settings, loaded.settings.pg_dashboards_user, loaded.settings.secret("pg_dashboards_password")
    ) as conn:
        route = _find(run_dashboard(conn, replay, start, end, {"vehicle": [loaded.zj_vehicle]}), "Route")
    assert route.rows > 0
    print(
        f"\ncity account {role}: {checked} queries with org / vehicle rows, all in js.nj; "
        f"live map {city_map.rows} "
        f"of {all_map.rows} vehicles"
    )


def test_kpi_rollup_agrees_with_the_tables_it_summarises(loaded: Loaded) -> None:
    # The working day and the next (a close 5 h after a late alert lands there).
    days = {
        "tz": "Asia/Shanghai",
        "d1": loaded.past_day.date(),
        "d2": loaded.past_day.date() + timedelta(days=1),
    }
    local = "(%s AT TIME ZONE %%(tz)s)::date BETWEEN %%(d1)s AND %%(d2)s"
    trips = f"SELECT trip_id, distance_m FROM trips WHERE NOT retracted AND {local % 'start_at'}"
    with connect(loaded.settings) as conn:
        rolled = conn.execute(
            "SELECT sum(trips), sum(km_driven), sum(off_hours_trips), sum(alerts_raised), "
            "sum(alerts_closed), sum(fixes) FROM kpi_daily WHERE day BETWEEN %(d1)s AND %(d2)s",
            days,
        ).fetchone()
        direct = conn.execute(
            f"SELECT (SELECT count(*) FROM ({trips}) t), (SELECT sum(distance_m) / 1000 FROM ({trips}) t), "
            "(SELECT count(DISTINCT trip_id) FROM alerts WHERE type = 'off_hours' AND status <> 'retracted' "
            f" AND trip_id IN (SELECT trip_id FROM ({trips}) t)), "
            f"(SELECT count(*) FROM alerts WHERE status <> 'retracted' AND {local % 'raised_at'}), "
            f"(SELECT count(*) FROM alert_events WHERE to_status = 'closed' AND {local % 'at'}), "
            f"(SELECT count(*) FROM positions WHERE {local % 'ts'})",
            days,
        ).fetchone()
    assert rolled is not None and direct is not None
    assert rolled[0] == direct[0] > 0 and abs(rolled[1] - direct[1]) < 1e-6 * direct[1]
    assert rolled[2] == direct[2] and rolled[3] == direct[3] > 0 and rolled[4] == direct[4] >= 1
    assert rolled[5] == direct[5] > 0

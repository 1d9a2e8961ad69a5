"""Who may see what: city and unit accounts see only their org subtree in every table (psql, real DB)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fleetwatch.settings import Settings
from store.db import connect
from store.maintain import seal_chunks
from store.registry import DeviceRow, OrgRow, VehicleRow, upsert_registry
from store.roles import add_org_account

pytestmark = pytest.mark.integration

POSITION_COLUMNS = "ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, heading, ignition, received_at"

#: Every table a scoped account can read, with the org column its rows are filtered on.
DATA_TABLES = ("positions", "trips", "alerts", "alert_events", "orders", "vehicle_state")


def psql(settings: Settings, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    return subprocess.run(
        [exe, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", settings.pg_host, "-p", str(settings.pg_port),
         "-U", user, "-d", settings.pg_database, "-c", sql],
        env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def province(database: Settings, unique: str) -> Iterator[dict[str, str]]:
    """A province p<u> with cities a and b, one unit each, one vehicle per unit, a row in every table,
    and accounts: city a, unit b.u1. Dropped afterwards (rows stay; their orgs are unique)."""
    p = f"p{unique}"
    units = {f"{p}.a.u1": f"A{unique[:6]}", f"{p}.b.u1": f"B{unique[:6]}"}
    t0 = datetime.now(UTC) - timedelta(hours=3)
    accounts = {"city": f"city_a_{unique}", "unit": f"unit_b1_{unique}"}
    with connect(database) as conn:
        upsert_registry(
            conn,
            [OrgRow(p, "province", None), OrgRow(f"{p}.a", "city a", p), OrgRow(f"{p}.b", "city b", p),
             OrgRow(f"{p}.a.u1", "unit a1", f"{p}.a"), OrgRow(f"{p}.b.u1", "unit b1", f"{p}.b")],
            [VehicleRow(v, org) for org, v in units.items()],
            [DeviceRow(f"dev-{v}", v) for v in units.values()],
        )  # fmt: skip
        with conn.transaction():
            for org, v in units.items():
                conn.execute(
                    f"INSERT INTO positions ({POSITION_COLUMNS}) SELECT %s + n * interval '10 s', "
                    "%s, %s, %s, n, 32, 118.7, 30, 0, true, now() FROM generate_series(1, 5) n",
                    (t0, v, f"dev-{v}", org),
                )
                conn.execute(
                    "INSERT INTO trips VALUES (%s, %s, %s, %s, %s, 32, 118, 32.1, 118.1, 1000, 50, 5, NULL, "
                    "1)",
                    (f"trip-{v}", v, org, t0, t0 + timedelta(minutes=30)))  # fmt: skip
                conn.execute(
                    "INSERT INTO alerts (alert_id, type, vehicle_id, org, start_at, lat, lon, raised_at, "
                    "due_at, revision) VALUES (%s, 'off_hours', %s, %s, %s, 32, 118, %s, %s, 1)",
                    (f"alert-{v}", v, org, t0, t0, t0 + timedelta(days=3)))  # fmt: skip
                conn.execute(
                    "INSERT INTO alert_events (alert_id, org, actor, kind, to_status, revision) "
                    "VALUES (%s, %s, 'detection', 'raised', 'open', 1)", (f"alert-{v}", org))  # fmt: skip
                conn.execute(
                    "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, 'x', 'y', NULL, 'approved', 1)",
                    (f"order-{v}", v, org, t0, t0 + timedelta(hours=1)))  # fmt: skip
                conn.execute(
                    "INSERT INTO vehicle_state (vehicle_id, org, ts, lat, lon, speed_kmh, ignition, status, "
                    "computed_at, revision) VALUES (%s, %s, %s, 32, 118, 0, false, 'parked', %s, 1)",
                    (v, org, t0, t0),
                )
            seal_chunks(conn, "positions")
        add_org_account(conn, accounts["city"], f"{p}.a", "city-pw")
        add_org_account(conn, accounts["unit"], f"{p}.b.u1", "unit-pw")
    yield {"p": p, **accounts}
    with connect(database) as conn:
        conn.execute("DELETE FROM org_accounts WHERE role_name = ANY(%s)", (list(accounts.values()),))
        for role in accounts.values():
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.commit()


def _orgs_seen(settings: Settings, user: str, password: str, table: str, p: str) -> list[str]:
    column = "org_id" if table == "orgs" else "org"
    result = psql(settings, user, password, f"SELECT DISTINCT {column} FROM {table} ORDER BY 1")
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.split() if line.startswith(p)]


def test_a_city_account_sees_only_its_subtree_and_a_unit_only_itself(
    database: Settings, province: dict[str, str]
) -> None:
    p = province["p"]
    for table in (*DATA_TABLES, "vehicles"):
        assert _orgs_seen(database, province["city"], "city-pw", table, p) == [f"{p}.a.u1"], table
        assert _orgs_seen(database, province["unit"], "unit-pw", table, p) == [f"{p}.b.u1"], table
    assert _orgs_seen(database, province["city"], "city-pw", "orgs", p) == [f"{p}.a", f"{p}.a.u1"]
    devices = psql(database, province["city"], "city-pw", "SELECT device_id FROM devices")
    assert [d for d in devices.stdout.split() if d.endswith(p[1:7])] == [f"dev-A{p[1:7]}"]
    # Nothing outside any province either: no 'unregistered' fixes, no other test's orgs.
    everything = psql(database, province["city"], "city-pw", "SELECT DISTINCT org FROM positions")
    assert everything.stdout.split() == [f"{p}.a.u1"]
    # The dashboards' reader sees both cities.
    reader = database.pg_dashboards_user, database.secret("pg_dashboards_password")
    assert _orgs_seen(database, *reader, "positions", p) == [f"{p}.a.u1", f"{p}.b.u1"]


def test_scoped_accounts_cannot_go_around_the_policy_through_chunks(
    database: Settings, province: dict[str, str]
) -> None:
    with connect(database) as conn:
        chunks = [str(c) for (c,) in conn.execute("SELECT show_chunks('positions')").fetchall()]
    assert chunks
    for chunk in chunks:
        result = psql(database, province["city"], "city-pw", f"SELECT count(*) FROM {chunk}")
        assert result.returncode != 0 and "permission denied" in result.stderr, (chunk, result.stdout)


def test_read_only_roles_cannot_write(database: Settings, province: dict[str, str]) -> None:
    insert = (f"INSERT INTO positions ({POSITION_COLUMNS}) "
              "VALUES (now(), 'x', 'x', 'unregistered', 1, 32, 118, 0, 0, true, now())")  # fmt: skip
    reader = database.pg_dashboards_user, database.secret("pg_dashboards_password")
    for user, password in (reader, (province["city"], "city-pw")):
        for sql in (insert, "UPDATE alerts SET status = 'closed'", "DELETE FROM orders"):
            result = psql(database, user, password, sql)
            assert result.returncode != 0, (user, sql)
            assert "permission denied for table" in result.stderr, result.stderr


def test_every_table_a_scoped_role_can_read_has_row_level_security(database: Settings) -> None:
    with connect(database) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid "
            "AND 'fw_scoped'::regrole = ANY (p.polroles)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
            "AND (has_table_privilege('fw_scoped', c.oid, 'SELECT') "
            "     OR has_any_column_privilege('fw_scoped', c.oid, 'SELECT'))"
        ).fetchall()
    assert {name for name, _, _ in rows} >= {*DATA_TABLES, "orgs", "vehicles", "devices"}
    assert [name for name, rls, policy in rows if not (rls and policy)] == []


def test_outside_psql_as_a_city_account_gets_nothing_of_another_city(
    database: Settings, province: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The figures the README quotes: rows of each city seen by city a's login, through psql."""
    p = province["p"]
    counts = {}
    for city in ("a", "b"):
        sql = f"SELECT count(*) FROM positions WHERE org LIKE '{p}.{city}.%'"
        counts[city] = int(psql(database, province["city"], "city-pw", sql).stdout)
    with connect(database) as conn:
        stored = conn.execute("SELECT count(*) FROM positions WHERE org LIKE %s", (f"{p}.b.%",)).fetchone()
    assert counts == {"a": 5, "b": 0} and stored == (5,)
    write = psql(database, province["city"], "city-pw", "DELETE FROM positions")
    assert write.returncode != 0
    with capsys.disabled():
        print(f"\n  psql as {province['city']}: positions of city a {counts['a']}, of city b {counts['b']} "
              f"(stored: {stored[0]}); DELETE: {write.stderr.strip()}", end="")

"""Positions against the real TimescaleDB (and Kafka): both write paths, replays, orgs from the registry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka.consumer.fetcher import ConsumerRecord
from psycopg import sql

from fleetwatch.kafka_io import delete_topic
from fleetwatch.records import Fix
from fleetwatch.settings import Settings
from sink.positions import PositionsSink
from store.db import connect
from store.registry import OrgRow, VehicleRow, upsert_registry
from store.roles import WRITER
from tests.sink.helpers import SinkThread, fixes, position_counts, produce, query, scratch_topic, wait_for

pytestmark = pytest.mark.integration


def _rows(sink: PositionsSink, batch: list[Fix]) -> list[tuple[object, ...]]:
    received = int(datetime.now(UTC).timestamp() * 1000)
    return [sink.decode(ConsumerRecord("t", 0, -1, i, received, 0, f.key, f.to_json(), [], None, 0, 0, 0))
            for i, f in enumerate(batch)]  # fmt: skip


@pytest.fixture
def writer_without_bypass(
    database: Settings, unique: str
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A writer login subject to row-level security (no BYPASSRLS), as a deployment may have it."""
    name, password = f"fw_test_writer_{unique}", f"pw-{unique}"
    with connect(database, autocommit=True) as owner:
        owner.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(name), sql.Literal(password), sql.Identifier(WRITER)))  # fmt: skip
        try:
            with psycopg.connect(database.pg_conninfo_for(name), password=password) as conn:
                yield conn
        finally:
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("login", ["sink", "writer without BYPASSRLS"])
def test_each_write_path_stores_a_fix_once_and_a_replayed_batch_falls_back_to_on_conflict(
    database: Settings, unique: str, login: str, request: pytest.FixtureRequest
) -> None:
    conn = connect(database, "sink") if login == "sink" else request.getfixturevalue("writer_without_bypass")
    sink = PositionsSink()
    start = datetime.now(UTC) - timedelta(hours=6)
    first = fixes(unique, 4, 50, start=start)
    second = [f for f in fixes(unique, 4, 80, start=start) if f.seq >= 50]  # 4 x 30 more
    with conn, conn.cursor() as cur:
        assert sink.write(cur, _rows(sink, first)) == 200
        conn.commit()
        # The same fixes again with new ones (a crash before the offsets were committed): the plain
        # COPY / INSERT hits the unique key, and the batch is staged again with ON CONFLICT.
        assert sink.write(cur, _rows(sink, first + second)) == 120
        conn.commit()
        assert sink.write(cur, _rows(sink, first)) == 0
        conn.commit()
        assert sink._direct is not None and sink._direct[1] is (login == "sink")  # the path under test
    assert position_counts(database, f"d{unique}-") == (320, 320)


def test_a_vehicle_registered_while_the_sink_runs_gets_its_org(database: Settings, unique: str) -> None:
    telemetry = scratch_topic(database, f"fw-test-orgs-{unique}")
    dlq = scratch_topic(database, f"fw-test-orgs-dlq-{unique}", 1)
    sent = fixes(unique, vehicles=2, per_vehicle=60)  # V..000 gets registered halfway, V..001 never
    early = [f for f in sent if f.seq < 30]
    late = [f for f in sent if f.seq >= 30]
    registered, stranger = f"V{unique[:6]}000", f"V{unique[:6]}001"

    def orgs_by_half() -> set[tuple[str, bool, str]]:
        rows = query(database, "SELECT DISTINCT vehicle_id, seq >= 30, org FROM positions "
                     "WHERE device_id LIKE %s", (f"d{unique}-%",))  # fmt: skip
        return {(str(v), bool(half), str(org)) for v, half, org in rows}

    try:
        with SinkThread(database, {"positions": telemetry}, f"g-{unique}", dlq):
            produce(database, telemetry, [(f.key, f.to_json()) for f in early])
            wait_for(lambda: position_counts(database, f"d{unique}-")[0] == 60, 60, "the early fixes stored")
            with connect(database) as conn:
                upsert_registry(conn, [OrgRow(f"o{unique}", "test org", None)],
                                [VehicleRow(registered, f"o{unique}")])  # fmt: skip
            produce(database, telemetry, [(f.key, f.to_json()) for f in late])
            wait_for(lambda: position_counts(database, f"d{unique}-")[0] == 120, 60, "the late fixes stored")
    finally:
        delete_topic(database, telemetry)
        delete_topic(database, dlq)
    assert orgs_by_half() == {
        (registered, False, "unregistered"), (registered, True, f"o{unique}"),
        (stranger, False, "unregistered"), (stranger, True, "unregistered"),
    }  # fmt: skip

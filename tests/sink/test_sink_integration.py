"""The sink against the real Kafka and TimescaleDB: exactly once, dead letters, revisions, retractions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from fleetwatch.kafka_io import delete_topic, read_topic
from fleetwatch.records import Alert, AlertType, DispatchOrder, OrderStatus, parse_dead_letter
from fleetwatch.settings import Settings
from store.db import connect
from store.registry import OrgRow, VehicleRow, upsert_registry
from tests.sink.helpers import fixes, position_counts, produce, query, run_sink, scratch_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topics_for(database: Settings, unique: str) -> Any:
    made: list[str] = []

    def make(name: str, partitions: int = 3) -> str:
        made.append(scratch_topic(database, f"fw-test-{name}-{unique}", partitions))
        return made[-1]

    yield make
    for topic in made:
        delete_topic(database, topic)


def test_every_fix_once_and_refused_records_do_not_block_their_partition(
    database: Settings, unique: str, topics_for: Any
) -> None:
    telemetry, dlq = topics_for("telemetry"), topics_for("dlq", 1)
    with connect(database) as conn:
        upsert_registry(conn, [OrgRow(f"o{unique}", "test org", None)],
                        [VehicleRow(f"V{unique[:6]}000", f"o{unique}")])  # fmt: skip
    sent = fixes(unique, vehicles=3, per_vehicle=200)
    good = [(f.key, f.to_json()) for f in sent]
    nul = sent[5].to_dict() | {"vehicle_id": "苏A\u0000X", "seq": 10_000}
    huge_seq = sent[6].to_dict() | {"seq": 2**63 + 5}  # fits the contract and JSON, not bigint
    v2 = sent[7].to_dict() | {"v": 2}
    no_lat = {k: val for k, val in sent[8].to_dict().items() if k != "lat"}
    far = sent[9].to_dict() | {"seq": 10_001, "lat": 95.0}  # typed fine; the table's CHECK refuses it
    bad = [(sent[0].key, raw) for raw in (b"{not json", *map(orjson.dumps, (nul, huge_seq, v2, no_lat, far)))]
    # Every fix twice (QoS 1 redelivery upstream) with the bad ones in the middle of vehicle 0's partition.
    produce(database, telemetry, good[:100] + bad + good[100:] + good)

    stats = run_sink(database, {"positions": telemetry}, f"g-{unique}", dlq=dlq)

    assert position_counts(database, f"d{unique}-") == (600, 600)
    assert stats.records == 1206 and stats.changed["positions"] == 600
    letters = [parse_dead_letter(r.value) for r in read_topic(database, dlq)]
    by_code = {letter.code: letter for letter in letters}
    assert sorted(letter.code for letter in letters) == [
        "db_rejected", "malformed_json", "missing_field", "out_of_range", "out_of_range", "unknown_version",
    ]  # fmt: skip
    # Refused while decoding, explained by the contract: which field, which value.
    assert by_code["unknown_version"].field == "v" and by_code["missing_field"].field == "lat"
    assert by_code["malformed_json"].source_topic == telemetry
    ranges = {letter.field: letter for letter in letters if letter.code == "out_of_range"}
    assert "bigint" in ranges["seq"].reason and "sqlstate" not in ranges["seq"].extra
    # Refused by the database (the lat CHECK), explained by the contract.
    assert ranges["lat"].extra["sqlstate"] == "23514" and "-90..90" in ranges["lat"].reason
    assert ranges["lat"].payload == orjson.dumps(far)
    # The contract accepts a NUL in text, PostgreSQL does not: the database's own reason.
    refused = by_code["db_rejected"]
    assert refused.payload == orjson.dumps(nul) and refused.extra["sqlstate"] == "22021"
    assert "0x00" in refused.reason
    orgs = dict(query(database, "SELECT vehicle_id, min(org) FROM positions WHERE device_id LIKE %s "
                      "GROUP BY 1", (f"d{unique}-%",)))  # fmt: skip
    assert orgs == {f"V{unique[:6]}000": f"o{unique}", f"V{unique[:6]}001": "unregistered",
                    f"V{unique[:6]}002": "unregistered"}  # fmt: skip

    # A replay of the whole topic (a new group) changes nothing.
    again = run_sink(database, {"positions": telemetry}, f"g2-{unique}", dlq=dlq)
    assert again.changed["positions"] == 0
    assert position_counts(database, f"d{unique}-") == (600, 600)


def _alert(unique: str, end: datetime | None, **details: Any) -> Alert:
    start = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    return Alert.new(AlertType.OFF_HOURS, f"V{unique[:6]}", "js.nj", start, end, 32.0, 118.7,
                     raised_at=start + timedelta(minutes=5), details=details)  # fmt: skip


def _change(kind: str, record: dict[str, Any] | None, revision: int, op: str = "upsert", *,
            id_: str | None = None, reason: str | None = None, order_id: str | None = None) -> bytes:
    """A change envelope as the stream workers write it (issue 10's Change v1)."""
    assert record is not None or id_ is not None
    change = {"v": 1, "kind": kind, "op": op, "id": id_ or (record or {})[f"{kind}_id"],
              "vehicle_id": (record or {}).get("vehicle_id", "V"), "revision": revision,
              "emitted_at": datetime.now(UTC).isoformat(), "record": record, "reason": reason,
              "order_id": order_id}  # fmt: skip
    return orjson.dumps({k: v for k, v in change.items() if v is not None})


def test_alerts_keep_the_newest_revision_retractions_stay_marked_and_events_record_each_change(
    database: Settings, unique: str, topics_for: Any
) -> None:
    alerts, dlq = topics_for("alerts"), topics_for("dlq", 1)
    open_ = _alert(unique, None, minutes=5)
    ended = _alert(unique, open_.start + timedelta(minutes=40), minutes=40)
    key = open_.vehicle_id.encode()
    group = f"g-{unique}"

    def sink_once() -> None:
        run_sink(database, {"alerts": alerts}, group, dlq=dlq, idle_exit_s=2)

    def row() -> tuple[Any, ...]:
        return query(database, "SELECT status, end_at, revision, details->>'minutes' FROM alerts "
                     "WHERE alert_id = %s", (open_.alert_id,))[0]  # fmt: skip

    produce(database, alerts, [(key, _change("alert", open_.to_dict(), 1))])
    sink_once()
    assert row() == ("open", None, 1, "5")
    # A manager acknowledges it; detection then extends it (rev 3) and a stale rev 2 arrives late.
    with connect(database) as conn:
        conn.execute("UPDATE alerts SET status = 'acknowledged' WHERE alert_id = %s", (open_.alert_id,))
        conn.execute("INSERT INTO alert_events (alert_id, org, actor, kind, from_status, to_status) "
                     "VALUES (%s, 'js.nj', 'manager-1', 'acknowledged', 'open', 'acknowledged')",
                     (open_.alert_id,))  # fmt: skip
    produce(database, alerts, [(key, _change("alert", ended.to_dict(), 3))])
    sink_once()
    produce(database, alerts, [(key, _change("alert", open_.to_dict(), 2))])
    sink_once()
    assert row() == ("acknowledged", ended.end, 3, "40")  # workflow status kept, stale rev ignored
    # A late order exempts it: the retraction carries only the id, the reason and the order.
    retraction = _change("alert", None, 4, "retract", id_=open_.alert_id, reason="exempted", order_id="O-1")
    produce(database, alerts, [(key, retraction)])
    sink_once()
    assert row() == ("retracted", ended.end, 4, "40")
    assert query(database, "SELECT retract_order_id FROM alerts WHERE alert_id = %s", (open_.alert_id,)) == [
        ("O-1",)
    ]

    events = query(database, "SELECT actor, kind, from_status, to_status, reason, revision FROM alert_events "
                   "WHERE alert_id = %s ORDER BY event_id", (open_.alert_id,))  # fmt: skip
    assert events == [
        ("detection", "raised", None, "open", None, 1),
        ("manager-1", "acknowledged", "open", "acknowledged", None, None),
        ("detection", "updated", "acknowledged", "acknowledged", None, 3),
        ("detection", "retracted", "acknowledged", "retracted", "exempted", 4),
    ]
    # Replaying the whole topic from the start adds nothing.
    run_sink(database, {"alerts": alerts}, f"g2-{unique}", dlq=dlq, idle_exit_s=2)
    assert row() == ("retracted", ended.end, 4, "40")
    assert len(query(database, "SELECT 1 FROM alert_events WHERE alert_id = %s", (open_.alert_id,))) == 4


def test_orders_trips_and_vehicle_state_take_the_latest_version(
    database: Settings, unique: str, topics_for: Any
) -> None:
    orders, trips, states = topics_for("orders"), topics_for("trips"), topics_for("state")
    dlq = topics_for("dlq", 1)
    t0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    order = DispatchOrder(f"O-{unique}", f"V{unique[:6]}", "js.nj", t0, t0 + timedelta(hours=4), "meeting",
                          "province hall", OrderStatus.APPROVED)  # fmt: skip
    cancelled = DispatchOrder(**{**order.to_dict(), "start": order.start, "end": order.end,  # type: ignore[arg-type]
                                 "status": OrderStatus.CANCELLED, "v": 1})
    trip = {"v": 1, "trip_id": f"T-{unique}", "vehicle_id": order.vehicle_id, "org": "js.nj",
            "start": t0.isoformat(), "end": (t0 + timedelta(minutes=30)).isoformat(), "start_lat": 32.0,
            "start_lon": 118.7, "end_lat": 32.1, "end_lon": 118.8, "distance_m": 12000.0,
            "max_speed_kmh": 70.0, "fix_count": 180}  # fmt: skip
    state = {"v": 1, "vehicle_id": order.vehicle_id, "org": "js.nj", "ts": t0.isoformat(), "lat": 32.0,
             "lon": 118.7, "speed_kmh": 0.0, "acc": False, "status": "parked", "open_alerts": [],
             "updated_at": t0.isoformat()}  # fmt: skip
    key = order.vehicle_id.encode()
    produce(database, orders, [(order.order_id.encode(), order.to_json()),
                               (order.order_id.encode(), cancelled.to_json())])  # fmt: skip
    stale = trip | {"fix_count": 1}
    produce(database, trips, [(key, _change("trip", trip, 2)), (key, _change("trip", stale, 1)),
                              (key, _change("trip", trip, 3, "retract", reason="late_fix"))])  # fmt: skip
    moving = state | {"ts": (t0 + timedelta(minutes=5)).isoformat(), "status": "moving", "speed_kmh": 50.0,
                      "acc": True, "open_alerts": ["a1"]}  # fmt: skip
    # Offsets order one vehicle's states: the last one written is the newest.
    produce(database, states, [(key, orjson.dumps(state)), (key, orjson.dumps(moving)),
                               (key, orjson.dumps(state | {"status": "flying"}))])  # fmt: skip

    stats = run_sink(database, {"orders": orders, "trips": trips, "vehicle_state": states},
                     f"g-{unique}", dlq=dlq)  # fmt: skip

    def one(sql: str, key: object) -> list[tuple[Any, ...]]:
        return query(database, sql, (key,))

    assert one("SELECT status FROM orders WHERE order_id = %s", order.order_id) == [("cancelled",)]
    assert one("SELECT fix_count, retracted, retract_reason, revision FROM trips WHERE trip_id = %s",
               trip["trip_id"]) == [(180, True, "late_fix", 3)]  # fmt: skip
    assert one("SELECT status, open_alert_ids, revision FROM vehicle_state WHERE vehicle_id = %s",
               order.vehicle_id) == [("moving", ["a1"], 1)]  # offset 1  # fmt: skip
    assert stats.dead_lettered == 1 and stats.rejected == {"bad_value": 1}  # status 'flying'
    # A replay from the start (a new group) leaves every table as it is.
    again = run_sink(database, {"orders": orders, "trips": trips, "vehicle_state": states},
                     f"g2-{unique}", dlq=dlq)  # fmt: skip
    assert again.changed["vehicle_state"] == 0 and again.changed["orders"] == 0
    assert one("SELECT status FROM vehicle_state WHERE vehicle_id = %s", order.vehicle_id) == [("moving",)]

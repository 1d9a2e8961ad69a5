"""simulator -> MQTT -> bridge -> Kafka -> sink -> positions: every valid fix exactly once.

(The stream-worker leg, trips and alerts in the database against `fleetwatch detect`, joins
this test once the workers exist.)
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import create_topic, delete_topic
from fleetwatch.records import parse_fix
from fleetwatch.settings import Settings
from fleetwatch.stack import add_devices, remove_devices
from simulator import _mqtt
from simulator._dataset import build_scenarios
from simulator._faults import FaultConfig
from store.db import connect
from store.registry import DeviceRow, OrgRow, VehicleRow, upsert_registry
from tests.ingest.helpers import BridgeProcess
from tests.sink.helpers import SinkThread, query, start_group_at_end, wait_for

pytestmark = pytest.mark.integration


def test_every_valid_fix_from_the_simulator_is_in_positions_exactly_once(
    database: Settings, unique: str, tmp_path: Path
) -> None:
    ns = f"K{unique[:6]}"
    faults = FaultConfig(duplicates=0.05, reorder=0.03, malformed=0.01)
    ds = build_scenarios(["workday", "offline_late_upload", "power_cut", "night", "dwell_ktv"], seed=7,
                         faults=faults, namespace=ns)  # fmt: skip
    vehicles = ds.world.vehicles
    valid = {}
    for _vehicle, m in ds.messages():
        if m.kind == "fix":
            fix = parse_fix(m.payload, max_future=timedelta(days=3650))
            valid[(fix.device_id, fix.seq, fix.ts)] = fix
    garbage = sum(1 for _, m in ds.messages() if m.kind == "malformed")
    duplicates = sum(1 for _, m in ds.messages() if m.kind == "duplicate")
    assert garbage > 0 and duplicates > 0

    with connect(database) as conn:
        units = {v.unit.org_id: v.unit for v in vehicles}
        upsert_registry(
            conn,
            [OrgRow("js", "江苏省", None), *(OrgRow(c, c, "js") for c in {u.city for u in units.values()}),
             *(OrgRow(u.org_id, u.name, u.city) for u in units.values())],
            [VehicleRow(v.vehicle_id, v.org) for v in vehicles],
            [DeviceRow(v.device_id, v.vehicle_id) for v in vehicles],
        )  # fmt: skip
    add_devices(database, [(v.device_id, v.vehicle_id, v.password) for v in vehicles])
    group = f"fw-test-chain-{unique}"
    start_group_at_end(database, group, topics.TELEMETRY)
    dlq = f"fw-test-chain-dlq-{unique}"
    create_topic(database, dlq)
    bridge = BridgeProcess(tmp_path / "bridge.log", instance=f"chain-{unique}", share_group=f"chain-{unique}",
                           extra=[a for v in vehicles for a in ("--only-device", v.device_id)])  # fmt: skip
    try:
        with bridge, SinkThread(database, {"positions": topics.TELEMETRY}, group, dlq) as sink:
            outgoing = (_mqtt.Outgoing(v.device_id, m.payload) for v, m in ds.messages())
            stats = _mqtt.publish(database, outgoing, {v.device_id: v.password for v in vehicles})
            assert stats.failed == 0 and stats.acked == stats.sent == ds.count()

            def stored() -> int:
                rows = query(database, "SELECT count(*) FROM positions WHERE device_id LIKE %s", (f"{ns}%",))
                return int(rows[0][0])

            wait_for(lambda: stored() >= len(valid), 120, f"{len(valid)} positions of {ns}")
            # Let anything extra (a duplicate that slipped through) land before counting.
            wait_for(lambda: sink.runner.stats.records >= len(valid) + duplicates, 30, "sink caught up")
    finally:
        remove_devices(database, [v.device_id for v in vehicles])
        delete_topic(database, dlq)

    rows = query(database, "SELECT device_id, seq, ts, vehicle_id, org, lat, lon FROM positions "
                 "WHERE device_id LIKE %s", (f"{ns}%",))  # fmt: skip
    assert len(rows) == len(valid)  # exactly once: nothing missing, nothing twice
    assert {(d, s, ts) for d, s, ts, *_ in rows} == set(valid)
    orgs = {v.vehicle_id: v.org for v in vehicles}
    for device, seq, ts, vehicle, org, lat, lon in rows:
        fix = valid[(device, seq, ts)]
        assert (vehicle, org, lat, lon) == (fix.vehicle_id, orgs[fix.vehicle_id], fix.lat, fix.lon)
    print(f"\nchain: {ds.count()} MQTT messages ({len(valid)} valid fixes, {duplicates} duplicates, "
          f"{garbage} malformed) -> {len(rows)} positions rows")

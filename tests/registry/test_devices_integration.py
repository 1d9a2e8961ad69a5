"""`fleetwatch devices add` on the real stack: database rows, registry topic, MQTT accounts, and a
bridge that was already running accepting the new devices (and dead-lettering one that left)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch import topics
from fleetwatch.cli import app
from fleetwatch.kafka_io import end_offsets, read_topic
from fleetwatch.records import parse_dead_letter, parse_device_registration
from fleetwatch.settings import Settings
from registry import device_password, remove
from store.db import connect
from store.registry import upsert_registry
from tests.ingest.helpers import BridgeProcess, Device, DevicePublisher, fix_json, fixes_of, only, wait_for
from tests.registry.helpers import TEST_ORG, ensure_migrated

pytestmark = pytest.mark.integration
runner = CliRunner()


def _registered_rows(settings: Settings, device_ids: list[str]) -> dict[str, tuple[str, str, str | None]]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT d.device_id, d.vehicle_id, v.org, v.depot FROM devices d "
            "JOIN vehicles v USING (vehicle_id) WHERE d.device_id = ANY(%s)", (device_ids,),
        ).fetchall()  # fmt: skip
    return {str(r[0]): (str(r[1]), str(r[2]), r[3]) for r in rows}  # type: ignore[misc]


def test_devices_add_while_the_bridge_runs(stack: Settings, unique: str, tmp_path: Path) -> None:
    ensure_migrated(stack)
    with connect(stack) as conn:
        upsert_registry(conn, [TEST_ORG])
    generated_id, given_id = f"g{unique}", f"p{unique}"
    given_password = f"given-{unique}-pw"
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(
        "device_id,vehicle_id,org,depot,password\n"
        f"{generated_id},苏R{unique[:6]}1,test,depot-r,\n"
        f"{given_id},苏R{unique[:6]}2,test,,{given_password}\n",
        encoding="utf-8",
    )
    devices = [
        Device(generated_id, f"苏R{unique[:6]}1", device_password(stack, generated_id)),
        Device(given_id, f"苏R{unique[:6]}2", given_password),
    ]
    since_registry = end_offsets(stack, topics.REGISTRY)
    since_fix = end_offsets(stack, topics.TELEMETRY)
    since_dlq = end_offsets(stack, topics.TELEMETRY_DLQ)
    bridge = BridgeProcess(tmp_path / "bridge.log", instance=f"reg-{unique}", share_group=f"reg-{unique}",
                           extra=only(devices))  # fmt: skip
    bridge.start()  # before the devices exist: it must pick them up from the topic, no restart
    try:
        credentials = tmp_path / "credentials.csv"
        result = runner.invoke(app, ["devices", "add", str(csv_file), "--credentials", str(credentials)])
        assert result.exit_code == 0, result.output
        assert "2 (1 with a generated password)" in result.output
        assert devices[0].password not in result.output and given_password not in result.output
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert credentials.read_text().splitlines() == [
            "device_id,password",
            f"{generated_id},{devices[0].password}",
        ]

        # Database rows and the compacted topic's records.
        assert _registered_rows(stack, [generated_id, given_id]) == {
            generated_id: (devices[0].vehicle_id, "test", "depot-r"),
            given_id: (devices[1].vehicle_id, "test", None),
        }
        records = [r for r in read_topic(stack, topics.REGISTRY, since=since_registry)
                   if r.key in (generated_id.encode(), given_id.encode())]  # fmt: skip
        assert {(r.key, parse_device_registration(r.value).vehicle_id) for r in records} == {
            (generated_id.encode(), devices[0].vehicle_id), (given_id.encode(), devices[1].vehicle_id)
        }  # fmt: skip

        # Each device publishes with its own credentials; the running bridge accepts both.
        for device in devices:
            with DevicePublisher(stack, device) as pub:
                pub.publish(fix_json(device, 1))
        wait_for(lambda: len(fixes_of(stack, topics.TELEMETRY, {generated_id, given_id}, since_fix)) >= 2,
                 60, "both fixes in telemetry")  # fmt: skip

        listed = runner.invoke(app, ["devices", "list", "--org", "test"], env={"COLUMNS": "200"})
        assert listed.exit_code == 0 and generated_id in listed.output and "depot-r" in listed.output

        # The registration leaves (its MQTT account stays): its next fix is dead-lettered, with why.
        assert remove(stack, [given_id], mqtt_accounts=False) == [given_id]
        time.sleep(1.5)  # the bridge's negative cache of this device (1 s) must not decide this
        with DevicePublisher(stack, devices[1]) as pub:
            pub.publish(fix_json(devices[1], 2))

        def letters() -> list[str]:
            found = [
                parse_dead_letter(r.value) for r in read_topic(stack, topics.TELEMETRY_DLQ, since=since_dlq)
            ]
            return [d.message for d in found if d.code == "unknown_device" and given_id in d.message]

        wait_for(letters, 60, "unknown_device dead letter")
        assert f"is not registered in registry topic {topics.REGISTRY}" in letters()[0]
        assert bridge.metrics().get("rejected:unknown_device", 0) >= 1
    finally:
        bridge.ensure_stopped()
        remove(stack, [generated_id, given_id])
    assert len(fixes_of(stack, topics.TELEMETRY, {given_id}, since_fix)) == 1  # the second never got there


def test_devices_add_refuses_a_bad_file_and_writes_nothing(
    stack: Settings, unique: str, tmp_path: Path
) -> None:
    ensure_migrated(stack)
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(f"device_id,vehicle_id,org\nok-{unique},苏Q1,test\nbad/{unique},苏Q2,test\n"
                        f"o-{unique},苏Q3,no-such-org-{unique}\n", encoding="utf-8")  # fmt: skip
    result = runner.invoke(app, ["devices", "add", str(csv_file)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert f"row 3: field 'device_id' = 'bad/{unique}'" in result.output
    assert _registered_rows(stack, [f"ok-{unique}"]) == {}

    csv_file.write_text(f"device_id,vehicle_id,org\no-{unique},苏Q3,no-such-org-{unique}\n", encoding="utf-8")
    result = runner.invoke(app, ["devices", "add", str(csv_file)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert f"row 2: field 'org' = 'no-such-org-{unique}': is not in the org tree" in result.output
    assert _registered_rows(stack, [f"o-{unique}"]) == {}

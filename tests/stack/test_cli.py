"""`fleetwatch stack` commands through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import app
from fleetwatch.settings import Settings
from fleetwatch.stack import remove_devices
from fleetwatch.stack._mosquitto import paths, read_dynsec, read_registry, verify_password

runner = CliRunner()


@pytest.mark.integration
def test_status_lists_each_service_state_and_port(stack: Settings) -> None:
    result = runner.invoke(app, ["stack", "status"])
    assert result.exit_code == 0, result.output
    kafka_port = int(stack.kafka_bootstrap.rsplit(":", 1)[1])
    for service, port in (("mosquitto", stack.mqtt_port), ("kafka", kafka_port), ("postgres", stack.pg_port)):
        line = next(line for line in result.output.splitlines() if f" {service} " in line)
        assert "running" in line
        assert str(port) in line


@pytest.mark.integration
def test_devices_add_from_csv(stack: Settings, unique: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "devices.csv"
    ids = [f"cli-{unique}-{i}" for i in range(3)]
    rows = "".join(f"{d},苏A{unique[:4]}{i},pw{i}\n" for i, d in enumerate(ids))
    csv_file.write_text("device_id,vehicle_id,password\n" + rows, encoding="utf-8")
    try:
        result = runner.invoke(app, ["stack", "devices", "add", str(csv_file)])
        assert result.exit_code == 0, result.output
        assert "3 device account(s)" in result.output
        registry = read_registry(paths(stack).registry)
        assert registry[ids[2]] == f"苏A{unique[:4]}2"
        clients = {c["username"]: c for c in read_dynsec(paths(stack).dynsec)["clients"]}
        assert verify_password(clients[ids[1]], "pw1")  # the plugin saved the account it created
    finally:
        remove_devices(stack, ids)


def test_devices_add_rejects_bad_row_naming_the_field(tmp_path: Path) -> None:
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("device_id,vehicle_id,password\nok-1,苏A1,p\nbad/id,苏A2,p\n", encoding="utf-8")
    result = runner.invoke(app, ["stack", "devices", "add", str(csv_file)],
                           env={"FLEETWATCH_STACK_DIR": str(tmp_path / "stack")})
    assert result.exit_code == 1
    assert "device row 2: field 'device_id'" in result.output
    assert "'bad/id'" in result.output
    assert not (tmp_path / "stack" / "registry.csv").exists()  # nothing half-written


def test_logs_rejects_unknown_service() -> None:
    result = runner.invoke(app, ["stack", "logs", "redis"])
    assert result.exit_code == 1
    assert "unknown 'redis'" in result.output


def test_down_refuses_an_unknown_service_and_stops_nothing() -> None:
    result = runner.invoke(app, ["stack", "down", "kafak"])
    assert result.exit_code == 2
    assert "unknown service(s) ['kafak']" in result.output
    assert "stop" not in result.output

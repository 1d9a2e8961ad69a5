"""`fleetwatch stack` commands through the real CLI entry point."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import app
from fleetwatch.settings import Settings

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


def test_logs_rejects_unknown_service() -> None:
    result = runner.invoke(app, ["stack", "logs", "redis"])
    assert result.exit_code == 1
    assert "unknown 'redis'" in result.output


def test_down_refuses_an_unknown_service_and_stops_nothing() -> None:
    result = runner.invoke(app, ["stack", "down", "kafak"])
    assert result.exit_code == 2
    assert "unknown service(s) ['kafak']" in result.output
    assert "stop" not in result.output

"""The systemd unit templates in deploy/systemd: Debian's conventions, each ExecStart a real
`fleetwatch` command line (its options parse), and `systemd-analyze verify` accepts them."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).parents[2] / "deploy" / "systemd"
INSTALLED = "/opt/fleetwatch/venv/bin/fleetwatch"
SERVICES = ("fleetwatch-ingest@", "fleetwatch-worker@", "fleetwatch-sink@", "fleetwatch-notify",
            "fleetwatch-jt808@")  # fmt: skip


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order (systemd allows a key more than once, so no configparser)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}:{number}: not KEY=VALUE inside a section: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def value(section: list[tuple[str, str]], key: str) -> str:
    found = [v for k, v in section if k == key]
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_unit_follows_the_conventions(name: str) -> None:
    unit = parse_unit(UNITS / f"{name}.service")
    service = unit["Service"]
    assert value(service, "Restart") == "on-failure"
    assert value(service, "EnvironmentFile") == "/etc/fleetwatch/fleetwatch.env"
    assert value(service, "User") == "fleetwatch" and value(service, "StateDirectory") == "fleetwatch"
    assert value(service, "ProtectSystem") == "strict" and value(service, "NoNewPrivileges") == "yes"
    assert value(unit["Unit"], "PartOf") == "fleetwatch.target"
    assert value(unit["Install"], "WantedBy") == "fleetwatch.target"
    assert int(value(unit["Unit"], "StartLimitBurst")) > 1


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_is_a_fleetwatch_command_that_parses(name: str) -> None:
    """Run the unit's command line (specifiers filled in) with --help: typer parses every option
    first, so a misspelt subcommand or option fails here."""
    argv = shlex.split(value(parse_unit(UNITS / f"{name}.service")["Service"], "ExecStart"))
    assert argv[0] == INSTALLED
    args = [a.replace("%i", "a").replace("%H", "host") for a in argv[1:]]
    command = [sys.executable, "-m", "fleetwatch", *args, "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Usage:" in result.stdout


def verify(units: list[Path]) -> list[str]:
    """What `systemd-analyze verify` says about these files (it exits 0 on many problems, e.g. an
    unknown key or value it ignores, so its messages are the verdict)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the parse tests above still ran)")
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                            timeout=120, cwd=units[0].parent)  # fmt: skip
    return [line for line in result.stderr.splitlines() if str(units[0].parent) in line] + (
        [f"exit {result.returncode}: {result.stderr}"] if result.returncode else []
    )


def installed_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this venv's fleetwatch (verify checks that the binary
    exists) and the templates instantiated, as `systemctl enable fleetwatch-worker@1` would."""
    fleetwatch = Path(sys.executable).with_name("fleetwatch")
    units = []
    for unit in sorted(UNITS.iterdir()):
        if unit.suffix in (".service", ".target", ".timer"):
            copy = tmp_path / unit.name.replace("@.", "@1.")
            copy.write_text(unit.read_text().replace(INSTALLED, str(fleetwatch)))
            units.append(copy)
    return units


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    assert verify(installed_copies(tmp_path)) == []


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The negative control: a misspelt key and a bad value are reported."""
    units = installed_copies(tmp_path)
    sink = tmp_path / "fleetwatch-sink@1.service"
    sink.write_text(sink.read_text().replace("Restart=on-failure", "Restart=sometimes")
                    .replace("KillMode=", "KillMod="))  # fmt: skip
    problems = verify(units)
    assert any("restart specifier" in p for p in problems) and any("KillMod" in p for p in problems)

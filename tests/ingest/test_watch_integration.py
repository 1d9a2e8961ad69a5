"""`fleetwatch watch` on the real stack: a terminal's fixes and dead letters as they land."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest

from fleetwatch.settings import Settings
from tests.ingest.helpers import (
    FLEETWATCH,
    BridgeProcess,
    DevicePublisher,
    fix_json,
    only,
    register_devices,
    wait_for,
)

pytestmark = pytest.mark.integration


def watch(*args: str, duration: float) -> subprocess.Popen[str]:
    argv = [FLEETWATCH, "watch", *args, "--duration", str(duration)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ)


def test_watch_shows_live_fixes_gaps_and_dead_letters(
    stack: Settings, unique: str, bridges: Callable[..., BridgeProcess]
) -> None:
    fitted, other = register_devices(stack, unique, 2)
    bridge = bridges(f"watch-{unique}", extra=only([fitted, other]))
    with bridge:
        live = watch("--device", fitted.device_id, "--since", "0", duration=20)
        assert live.stdout is not None
        first = live.stdout.readline()  # printed once it is positioned at the end of both topics
        assert first.startswith("listening on"), first
        with DevicePublisher(stack, fitted) as pub, DevicePublisher(stack, other) as other_pub:
            for seq in (0, 1, 2, 6):  # seqs 3-5 never sent: a gap of 3
                pub.publish(fix_json(fitted, seq))
                other_pub.publish(fix_json(other, seq))
            pub.publish(fix_json(fitted, 7, vehicle_id="苏A00000"))  # fitted to the wrong vehicle?
        wait_for(lambda: bridge.metrics().get("acked", 0) >= 9, 60, "all acked")
        rest, _ = live.communicate(timeout=120)
        out = first + rest
        # History: the same terminal found by its vehicle, from the last minute.
        by_vehicle, _ = watch("--vehicle", fitted.vehicle_id, "--since", "60", duration=6).communicate(
            timeout=60
        )

    print(out)
    lines = out.splitlines()
    seqs = [line.split()[1] for line in lines if "km/h" in line]
    assert seqs == ["0", "1", "2", "6"], out
    assert any("gap: 3 seq missing" in line for line in lines), out
    assert any("DEAD LETTER vehicle_mismatch" in line and "苏A00000" in line for line in lines), out
    assert other.device_id not in out
    assert "fixes 4" in out and "dead letters 1" in out and "gaps 1 (3 seq missing)" in out
    assert "fixes 4" in by_vehicle and "dead letters 1" in by_vehicle, by_vehicle

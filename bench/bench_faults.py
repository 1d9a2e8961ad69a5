"""The fault suite with the full PostgreSQL outage: every part of the pipeline killed or taken away
during one simulator run (tests/faults/suite.py), the counts table printed.

    .venv/bin/python bench/bench_faults.py [--pg-outage 60] [--publish-seconds 160]

The CI test (tests/faults) runs the same suite with a 15 s outage; here PostgreSQL is away 60 s,
so the publishing window is longer to keep fixes flowing through every fault.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console

from fleetwatch.settings import Settings
from fleetwatch.stack import ensure_up
from store.db import connect
from store.migrate import migrate
from store.roles import ensure_service_logins
from tests.faults.suite import run_suite

# Benchmarks drive the services over scratch topics that their own Kafka ACLs rightly do not
# cover: every client acts as the tooling principal, as in the tests (tests/conftest.py).
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")

console = Console(width=None if sys.stdout.isatty() else 150)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-outage", type=float, default=60.0, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--publish-seconds", type=float, default=160.0, help="how long the simulator sends")
    args = parser.parse_args()
    settings = Settings()
    ensure_up(settings)
    with connect(settings) as conn:
        migrate(conn)
        ensure_service_logins(conn, settings)
    with tempfile.TemporaryDirectory(prefix="fw-faults-") as tmp:
        counts = run_suite(
            settings,
            Path(tmp),
            uuid.uuid4().hex[:10],
            pg_outage_s=args.pg_outage,
            publish_seconds=args.publish_seconds,
            log=console.print,
        )
    console.print(counts.table(f"fault suite (PostgreSQL away {args.pg_outage:g} s), {counts.seconds:.0f} s"))
    console.print("faults: " + "; ".join(f"{name} ({took:.1f} s)" for name, took in counts.faults))
    console.print(
        f"outages felt: {counts.felt}; restarts: {counts.restarts}; "
        f"unexpected exits: {counts.unexpected_exits}; stack not running: {counts.stack_not_running}"
    )
    console.print(
        f"lost fixes outside the autosave window before the broker kill: {counts.lost_outside_window}"
    )
    ok = (
        not any(counts.unexpected_exits.values())
        and counts.fixes_duplicated == 0
        and counts.lost_before_kill <= counts.loss_bound
        and counts.lost_outside_window == 0
        and counts.alerts_duplicated == 0
        and counts.alerts_unexpected == 0
        and counts.notifications_duplicated == 0
        and counts.notifications_unfinished == 0
        and counts.notifications_sent == counts.notifications_expected
    )
    if counts.lost_after_restart:
        console.print(
            f"[yellow]open: {counts.lost_after_restart} fixes acknowledged by the restarted Mosquitto "
            "were never delivered to the bridge (README: Broker crash bound)[/]"
        )
    console.print(
        "[green]all other guarantees held[/]" if ok else "[red]a guarantee failed (see the table)[/]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""`fleetwatch simulate ...`: scenarios, fleet load, replay, single fixes and bare worlds."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fleetwatch.settings import Settings
from simulator import _mqtt
from simulator._dataset import Dataset, WriteStats, build_fleet, build_scenarios, write_dataset
from simulator._faults import FaultConfig
from simulator._motion import TZ, MotionConfig
from simulator._scenarios import SCENARIOS
from simulator._world import Vehicle, World, build_world, rules_document, write_world

console = Console()
app = typer.Typer(
    help="Device simulator: labelled scenarios, fleet load, replay, one-off fixes.", no_args_is_help=True
)

Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives byte-identical output.")]
Out = Annotated[Path | None, typer.Option("--out", help="Write a world directory (JSON lines) here.")]
Mqtt = Annotated[bool, typer.Option("--mqtt", help="Publish through the running Mosquitto (QoS 1).")]
Dup = Annotated[float, typer.Option(help="Probability a fix is sent twice.", min=0, max=1)]
Reo = Annotated[float, typer.Option(help="Probability a fix is overtaken by the next ones.", min=0, max=1)]
Late = Annotated[float, typer.Option(help="Held-back late bursts per device per day (<= 540 s late).", min=0)]
Bad = Annotated[float, typer.Option(help="Probability of an extra malformed message.", min=0, max=1)]
Interval = Annotated[int, typer.Option(help="Seconds between fixes while moving.", min=1)]
Heartbeat = Annotated[int, typer.Option(help="Seconds between heartbeats while parked.", min=10)]
Protocol = Annotated[
    str, typer.Option(help="With --mqtt: 'mqtt' (JSON over MQTT) or 'jt808' (TCP terminals to the gateway).")
]
Gateway = Annotated[
    str | None, typer.Option(help="JT/T 808 gateway HOST:PORT [default: 127.0.0.1:FLEETWATCH_JT808_PORT].")
]
Edition = Annotated[int, typer.Option(help="JT/T 808 edition the terminals speak: 2013 or 2019.")]
Invalid = Annotated[
    float, typer.Option(help="Share of fixes without a GPS fix (fix_valid false).", min=0, max=0.5)
]
Jumps = Annotated[
    float, typer.Option(help="Chance per drive of a signal loss, then a fix 1-1.5 km off.", min=0, max=1)
]
Drift = Annotated[float, typer.Option(help="Parked heartbeats wander up to this many metres.", min=0)]
Namespace = Annotated[
    str, typer.Option(help="Prefix of device ids (plates shift too): keeps two datasets' vehicles apart.")
]
Slow = Annotated[
    float, typer.Option(help="Share of vehicles reporting every 30 s while moving (loggers).", min=0, max=1)
]


def _motion(
    interval: int, heartbeat: int, invalid: float, jumps: float, drift: float, slow: float
) -> MotionConfig:
    return MotionConfig(
        interval, heartbeat, invalid_rate=invalid, jump_rate=jumps, parked_drift_m=drift, slow_share=slow
    )


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r}: use a number with s, m, h or d, e.g. 90s, 30m, 2h, 1d")
    value, unit = float(m.group(1)), m.group(2)
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def _faults(duplicates: float, reorder: float, late_bursts: float, malformed: float) -> FaultConfig:
    return FaultConfig(duplicates=duplicates, reorder=reorder, late_bursts=late_bursts, malformed=malformed)


def _need_one_output(out: Path | None, mqtt: bool) -> None:
    if (out is None) == (not mqtt):
        raise typer.BadParameter("give exactly one of --out DIR or --mqtt")


def _write_summary(stats: WriteStats, ds: Dataset, out: Path, seconds: float) -> None:
    table = Table(title=f"world written to {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("vehicles", f"{stats.vehicles:,}")
    table.add_row("fixes", f"{stats.fixes:,}")
    table.add_row("duplicates", f"{stats.duplicates:,}")
    table.add_row("malformed", f"{stats.malformed:,}")
    table.add_row("dispatch orders", f"{stats.orders:,}")
    by_type = Counter((t["type"], t.get("expect", True)) for t in ds.truth)
    for (kind, expect), n in sorted(by_type.items()):
        table.add_row(f"truth {kind}{'' if expect else ' (must NOT alert)'}", f"{n:,}")
    table.add_row("seconds", f"{seconds:.1f}")
    table.add_row("fixes generated / s", f"{stats.fixes / seconds:,.0f}" if seconds else "-")
    console.print(table)


def _publish_summary(stats: _mqtt.PublishStats, title: str) -> None:
    table = Table(title=title)
    for col in ("sent", "acknowledged", "failed", "seconds", "rate (acked/s)", "connections", "account"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{stats.sent:,}", f"{stats.acked:,}", f"{stats.failed:,}", f"{stats.seconds:.1f}",
        f"{stats.rate:,.0f}", str(stats.connections), stats.account,
    )  # fmt: skip
    console.print(table)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
    )  # fmt: skip


def register_world(settings: Settings, world: World, jt808_id: Callable[[Vehicle], str] | None = None) -> int:
    """Register the world's org tree, vehicles and devices through the product's registry (database,
    registry topic, MQTT accounts with the world's passwords). With ``jt808_id`` (the terminal
    number of a vehicle) its devices are JT/T 808 terminals: registered under that id, no MQTT account."""
    from registry import DeviceEntry, RegistryInputError, register
    from registry.mosquitto import AccountsError
    from store.registry import OrgRow

    name = jt808_id or (lambda v: v.device_id)
    orgs = [OrgRow(o["id"], o["name"], o.get("parent")) for o in rules_document(world)["orgs"]]
    entries = [DeviceEntry(name(v), v.vehicle_id, v.org, v.unit.depot_id, v.password) for v in world.vehicles]
    try:
        return register(settings, entries, orgs, mqtt_accounts=jt808_id is None).devices
    except (RegistryInputError, AccountsError, RuntimeError) as exc:
        console.print(f"[red]devices not registered:[/] {exc}")
        raise typer.Exit(1) from None


def _outgoing(ds: Dataset, shard: int = 0, shards: int = 1) -> Iterator[_mqtt.Outgoing]:
    for v, m in ds.messages():
        if v.index % shards == shard:
            yield _mqtt.Outgoing(v.device_id, m.payload)


def _publish_dataset(
    ds: Dataset, rate: float, processes: int, admin_connections: int, title: str
) -> _mqtt.PublishStats:
    settings = Settings()
    n = register_world(settings, ds.world)
    console.print(f"registered {n} device(s) (database, registry topic, MQTT accounts)")
    devices = {v.device_id: v.password for v in ds.world.vehicles}
    total = ds.count()
    with _progress() as progress:
        task = progress.add_task("publishing", total=total, info="")

        def update(sent: int, acked: int, failed: int) -> None:
            progress.update(task, completed=acked, info=f"sent {sent:,} acked {acked:,} failed {failed:,}")

        if processes > 1:
            stats = _mqtt.publish_parallel(
                settings, lambda i, n: _outgoing(ds, i, n), devices, processes=processes, rate=rate,
                admin_connections=admin_connections, on_progress=update,
            )  # fmt: skip
        else:
            stats = _mqtt.publish(
                settings,
                _outgoing(ds),
                devices,
                rate=rate,
                admin_connections=admin_connections,
                on_progress=update,
            )
    _publish_summary(stats, title)
    if stats.failed:
        raise typer.Exit(1)
    return stats


@app.command("scenario")
def scenario_cmd(
    name: Annotated[str, typer.Argument(help="Scenario name, comma-separated names, 'all', or 'list'.")],
    out: Out = None,
    mqtt: Mqtt = False,
    seed: Seed = 1,
    duplicates: Dup = 0.0,
    reorder: Reo = 0.0,
    late_bursts: Late = 0.0,
    malformed: Bad = 0.0,
    interval: Interval = 10,
    heartbeat: Heartbeat = 300,
    invalid: Invalid = 0.01,
    jumps: Jumps = 0.0,
    drift: Drift = 0.0,
    slow_share: Slow = 0.0,
    protocol: Protocol = "mqtt",
    gateway: Gateway = None,
    edition: Edition = 2013,
    namespace: Namespace = "",
) -> None:
    """Run labelled scenarios (one vehicle each) and write fixes, orders and ground truth."""
    if name == "list":
        table = Table(title="scenario catalogue")
        table.add_column("name")
        table.add_column("what it does / expected truth")
        for n, fn in SCENARIOS.items():
            table.add_row(n, (fn.__doc__ or "").strip())
        console.print(table)
        return
    if protocol not in ("mqtt", "jt808"):
        raise typer.BadParameter(f"--protocol {protocol!r}: use mqtt or jt808")
    if edition not in (2013, 2019):
        raise typer.BadParameter(f"--edition {edition}: use 2013 or 2019")
    if protocol == "jt808":
        mqtt = out is None  # the live output is the gateway
    _need_one_output(out, mqtt)
    names = list(SCENARIOS) if name == "all" else [n.strip() for n in name.split(",") if n.strip()]
    t0 = time.monotonic()
    with console.status(f"generating {len(names)} scenario(s)"):
        try:
            ds = build_scenarios(
                names, seed, _motion(interval, heartbeat, invalid, jumps, drift, slow_share),
                _faults(duplicates, reorder, late_bursts, malformed), namespace=namespace,
            )  # fmt: skip
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0])) from None
    if out is not None:
        stats = write_dataset(ds, out)
        _write_summary(stats, ds, out, time.monotonic() - t0)
    elif protocol == "jt808":
        _send_jt808(ds, gateway, None if edition == 2013 else 1, f"scenario {name} -> JT/T 808 gateway")
    else:
        _publish_dataset(ds, 0.0, 1, 0, f"scenario {name} -> MQTT")


def _send_jt808(ds: Dataset, gateway: str | None, version: int | None, title: str) -> None:
    """Every vehicle becomes a JT/T 808 terminal: register, authenticate, report, batch-upload backlogs."""
    import asyncio

    from simulator import _jt808

    settings = Settings()
    host, _, port_text = (gateway or f"127.0.0.1:{settings.jt808_port}").rpartition(":")
    if not host or not port_text.isdigit():
        raise typer.BadParameter(f"--gateway {gateway!r}: use HOST:PORT")
    vehicles = ds.world.vehicles
    phones = {v.index: _jt808.phone_for(v.device_id) for v in vehicles}
    register_world(settings, ds.world, lambda v: phones[v.index])
    console.print(f"registered {len(vehicles)} terminal number(s) in the vehicle registry")
    plans = {
        v.index: _jt808.plan((msg.emit, msg.t, msg.kind, msg.payload) for msg in ds.streams[v.index])
        for v in vehicles
    }
    total = sum(len(step.locations) for steps in plans.values() for step in steps)
    totals = _jt808.TerminalStats()
    t0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("terminals reporting", total=total, info="")

        def advance(n: int) -> None:
            progress.advance(task, n)

        async def main() -> list[_jt808.TerminalStats | BaseException]:
            runs = [
                _jt808.run_terminal(
                    _jt808.Terminal(phones[v.index], v.vehicle_id, host, int(port_text), version=version),
                    plans[v.index],
                    advance,
                )
                for v in vehicles
            ]
            return await asyncio.gather(*runs, return_exceptions=True)

        results = asyncio.run(main())
    failures = [r for r in results if isinstance(r, BaseException)]
    for r in results:
        if isinstance(r, _jt808.TerminalStats):
            totals.add(r)
    seconds = time.monotonic() - t0
    table = Table(title=title)
    for col in (
        "terminals",
        "reports",
        "blind-area batches",
        "fixes in batches",
        "acknowledged fixes",
        "corrupt frames (answered)",
        "re-sends",
        "reconnects",
        "failed terminals",
        "seconds",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        str(len(vehicles)), f"{totals.reports:,}", f"{totals.batches:,}", f"{totals.batched_fixes:,}",
        f"{totals.acked_fixes:,}", f"{totals.corrupt_sent} ({totals.corrupt_answered})",
        str(totals.retransmissions), str(totals.reconnects), str(len(failures)), f"{seconds:.1f}",
    )  # fmt: skip
    console.print(table)
    for failure in failures[:5]:
        console.print(f"[red]terminal failed:[/] {failure!r}")
    if failures:
        raise typer.Exit(1)


@app.command("fleet")
def fleet_cmd(
    vehicles: Annotated[
        int, typer.Option(help="Number of vehicles (3/4 Nanjing, 1/4 Zhenjiang).", min=1)
    ] = 100,
    duration: Annotated[str, typer.Option(help="Simulated span, e.g. 1d, 8h, 30m.")] = "1d",
    start: Annotated[
        str | None,
        typer.Option(help="Simulated start (RFC 3339); default a recent working day 00:00 +08:00."),
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Target publish rate, fixes/s (0 = as fast as possible).")
    ] = 0.0,
    mix: Annotated[
        float, typer.Option(help="Share of Nanjing vehicles running a violating scenario.")
    ] = 0.05,
    out: Out = None,
    mqtt: Mqtt = False,
    processes: Annotated[int, typer.Option(help="Publisher processes (MQTT).", min=1)] = 2,
    admin: Annotated[
        bool,
        typer.Option("--admin/--per-device", help="Publish over a pool of svc-admin connections (load)."),
    ] = True,
    connections: Annotated[int, typer.Option(help="svc-admin connections per process.", min=1)] = 2,
    limit: Annotated[int, typer.Option(help="Publish at most this many messages (0 = all).", min=0)] = 0,
    seed: Seed = 1,
    duplicates: Dup = 0.0,
    reorder: Reo = 0.0,
    late_bursts: Late = 0.0,
    malformed: Bad = 0.0,
    interval: Interval = 10,
    heartbeat: Heartbeat = 300,
    invalid: Invalid = 0.01,
    jumps: Jumps = 0.0,
    drift: Drift = 0.0,
    slow_share: Slow = 0.0,
    namespace: Namespace = "",
) -> None:
    """N vehicles on ordinary days (plus a mix of scenarios): a labelled dataset, or load into Mosquitto."""
    _need_one_output(out, mqtt)
    span = parse_duration(duration)
    begin = None
    if start:
        begin = datetime.fromisoformat(start)
        if begin.tzinfo is None:
            raise typer.BadParameter("--start needs a UTC offset, e.g. 2026-11-25T08:00:00+08:00")
    t0 = time.monotonic()
    with console.status(f"simulating {vehicles:,} vehicles for {duration}"):
        ds = build_fleet(
            vehicles, seed, begin, span, mix,
            _motion(interval, heartbeat, invalid, jumps, drift, slow_share),
            _faults(duplicates, reorder, late_bursts, malformed), namespace=namespace,
        )  # fmt: skip
    generated = time.monotonic() - t0
    if out is not None:
        stats = write_dataset(ds, out)
        _write_summary(stats, ds, out, time.monotonic() - t0)
        return
    console.print(f"generated {ds.count():,} messages in {generated:.1f} s")
    if limit:
        _truncate(ds, limit)
    if not admin and vehicles > processes * _mqtt.MAX_CLIENTS_PER_PROCESS:
        processes = -(-vehicles // _mqtt.MAX_CLIENTS_PER_PROCESS)
        console.print(
            f"per-device connections: using {processes} processes "
            f"(at most {_mqtt.MAX_CLIENTS_PER_PROCESS} paho clients fit in one process)"
        )
    _publish_dataset(
        ds, rate, processes, connections if admin else 0,
        f"fleet of {vehicles:,} -> MQTT ({processes} process(es), "
        f"{'svc-admin pool' if admin else 'per-device connections'})",
    )  # fmt: skip


def _truncate(ds: Dataset, limit: int) -> None:
    """Keep the first ``limit`` messages in send order (load runs of a chosen size)."""
    keep: dict[int, int] = Counter()
    for n, (v, _m) in enumerate(ds.messages()):
        if n >= limit:
            break
        keep[v.index] += 1
    ds.streams = [s[: keep.get(i, 0)] for i, s in enumerate(ds.streams)]


@app.command("replay")
def replay_cmd(
    file: Annotated[
        Path, typer.Argument(help="Track: .csv (ts,lat,lon[,speed_kmh,heading,acc]), .gpx or .jsonl.")
    ],
    device: Annotated[str | None, typer.Option(help="Device id to send as (required for CSV/GPX).")] = None,
    vehicle: Annotated[str | None, typer.Option(help="Vehicle id (plate) for CSV/GPX tracks.")] = None,
    password: Annotated[str | None, typer.Option(help="The device's MQTT password.")] = None,
    devices_csv: Annotated[
        Path | None, typer.Option("--devices", help="devices.csv with passwords (for a world's fixes.jsonl).")
    ] = None,
    speed: Annotated[
        float, typer.Option(help="1 = real time, 60 = a minute per second, 0 = no waiting.")
    ] = 0.0,
    now: Annotated[bool, typer.Option("--now", help="Shift timestamps so the track starts now.")] = False,
) -> None:
    """Send a recorded track through Mosquitto, in real time or accelerated."""
    import csv

    from simulator._replay import Identity, read_track, schedule

    ident = Identity(device, vehicle) if device and vehicle else None
    try:
        track = read_track(file, ident)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for line, err in track.rejected[:10]:
        console.print(f"[yellow]line {line} skipped:[/] {err}")
    if len(track.rejected) > 10:
        console.print(f"[yellow]... {len(track.rejected) - 10} more skipped[/]")
    passwords: dict[str, str] = {}
    if devices_csv:
        with devices_csv.open(newline="") as fh:
            passwords = {r["device_id"]: r["password"] for r in csv.DictReader(fh)}
    if device and password:
        passwords[device] = password
    ids = {f.device_id for f in track.fixes}
    missing = sorted(ids - passwords.keys())
    if missing:
        raise typer.BadParameter(
            f"no password for device(s) {', '.join(missing[:5])}: give --password or --devices"
        )
    shift = datetime.now(UTC).astimezone(TZ).replace(microsecond=0) if now else None

    def timed() -> Iterable[_mqtt.Outgoing]:
        t0 = time.monotonic()
        for due, fix in schedule(track.fixes, speed, shift):
            delay = t0 + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield _mqtt.Outgoing(fix.device_id, fix.to_json())

    with _progress() as progress:
        task = progress.add_task(f"replaying {file.name}", total=len(track.fixes), info="")

        def update(sent: int, acked: int, failed: int) -> None:
            progress.update(task, completed=acked, info=f"sent {sent:,} failed {failed:,}")

        try:
            stats = _mqtt.publish(Settings(), timed(), {d: passwords[d] for d in ids}, on_progress=update)
        except ConnectionRefusedError as exc:
            console.print(f"[red]{exc}[/] (is the device registered, is the password right?)")
            raise typer.Exit(1) from None
    _publish_summary(stats, f"replay of {file}")
    if stats.failed:
        raise typer.Exit(1)


@app.command("send")
def send_cmd(
    device: Annotated[str, typer.Option(help="Device id = MQTT username.")],
    password: Annotated[str, typer.Option(help="The device's MQTT password.", prompt=True, hide_input=True)],
    vehicle: Annotated[str, typer.Option(help="Vehicle id (plate) the device is installed in.")],
    lat: Annotated[float, typer.Option(help="Latitude, WGS-84.")] = 32.0415,
    lon: Annotated[float, typer.Option(help="Longitude, WGS-84.")] = 118.7845,
    speed: Annotated[float, typer.Option(help="km/h")] = 0.0,
    heading: float = 0.0,
    acc: Annotated[bool, typer.Option("--acc/--no-acc", help="Ignition on?")] = True,
    seq: Annotated[int | None, typer.Option(help="Sequence number (default: from the clock).")] = None,
) -> None:
    """Send one fix (stamped now) with a device's credentials: checks a terminal's account end to end."""
    from fleetwatch.records import ContractError, parse_fix

    obj = {
        "v": 1, "device_id": device, "vehicle_id": vehicle,
        "ts": datetime.now(UTC).astimezone(TZ).replace(microsecond=0).isoformat(),
        "lat": lat, "lon": lon, "speed_kmh": speed, "heading": heading, "acc": acc,
        "seq": seq if seq is not None else int(time.time()),
    }  # fmt: skip
    try:
        fix = parse_fix(obj)
    except ContractError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        stats = _mqtt.publish(
            Settings(), [_mqtt.Outgoing(device, fix.to_json())], {device: password}, drain_timeout=10
        )
    except ConnectionRefusedError as exc:
        console.print(f"[red]{exc}[/] (is the device registered, is the password right?)")
        raise typer.Exit(1) from None
    _publish_summary(stats, f"one fix as {device}")
    if stats.failed:
        console.print("[red]the broker did not acknowledge the fix (wrong password or ACL?)[/]")
        raise typer.Exit(1)


@app.command("world")
def world_cmd(
    out: Annotated[Path, typer.Option("--out", help="World directory to write.")],
    vehicles: Annotated[
        int | None, typer.Option(help="Fleet size; default: the scenario world (one vehicle per scenario).")
    ] = None,
    seed: Seed = 1,
) -> None:
    """Write only the static world: rules.yaml, zones/*.geojson, devices.csv."""
    if vehicles is None:
        world = build_world(seed, nanjing=len(SCENARIOS))
    else:
        nj = (vehicles * 3 + 3) // 4
        world = build_world(seed, nanjing=nj, zhenjiang=vehicles - nj)
    write_world(world, out)
    console.print(f"world with {len(world.vehicles)} vehicles and {len(world.units)} units written to {out}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="simulate")

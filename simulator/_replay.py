"""Recorded tracks (CSV, GPX, JSON lines) turned back into telemetry fixes, with their timing."""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from fleetwatch.records import ContractError, Fix, parse_fix, parse_timestamp
from simulator._geography import M_PER_DEG_LAT, haversine_m, m_per_deg_lon


@dataclass(frozen=True)
class Identity:
    device_id: str
    vehicle_id: str


@dataclass
class Track:
    fixes: list[Fix]
    rejected: list[tuple[int, ContractError]]


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    dx = (b[1] - a[1]) * m_per_deg_lon(a[0])
    dy = (b[0] - a[0]) * M_PER_DEG_LAT
    return float(int(math.degrees(math.atan2(dx, dy))) % 360)


def _fix_from_point(
    ident: Identity, seq: int, ts: datetime, lat: float, lon: float, prev: Fix | None,
    speed: float | None = None, heading: float | None = None, acc: bool = True,
) -> Fix:  # fmt: skip
    if speed is None:
        if prev is None or ts <= prev.ts:
            speed = 0.0
        else:
            d = haversine_m(prev.lat, prev.lon, lat, lon)
            speed = round(d / (ts - prev.ts).total_seconds() * 3.6, 1)
    if heading is None:
        heading = _bearing((prev.lat, prev.lon), (lat, lon)) if prev is not None else 0.0
    obj = {
        "v": 1, "device_id": ident.device_id, "vehicle_id": ident.vehicle_id, "ts": ts.isoformat(),
        "lat": lat, "lon": lon, "speed_kmh": speed, "heading": heading, "acc": acc, "seq": seq,
    }  # fmt: skip
    return parse_fix(obj)


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on", "t")


def read_csv(path: Path, ident: Identity) -> Track:
    """Columns: ts (RFC 3339), lat, lon; optional speed_kmh, heading, acc."""
    fixes: list[Fix] = []
    rejected: list[tuple[int, ContractError]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"ts", "lat", "lon"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: CSV needs columns ts, lat, lon (missing: {', '.join(sorted(missing))})"
            )
        for line, row in enumerate(reader, start=2):
            try:
                ts = parse_timestamp(row["ts"])
                speed = float(row["speed_kmh"]) if row.get("speed_kmh") else None
                heading = float(row["heading"]) if row.get("heading") else None
                acc = _truthy(row["acc"]) if row.get("acc") else True
                fixes.append(
                    _fix_from_point(ident, len(fixes) + 1, ts, float(row["lat"]), float(row["lon"]),
                                    fixes[-1] if fixes else None, speed, heading, acc)
                )  # fmt: skip
            except ContractError as exc:
                rejected.append((line, exc))
            except ValueError as exc:
                rejected.append((line, ContractError("bad_value", None, row, str(exc))))
    return Track(fixes, rejected)


def read_gpx(path: Path, ident: Identity) -> Track:
    """Every <trkpt lat lon><time/></trkpt>; speed and heading are derived from the points."""
    root = ET.parse(path).getroot()
    fixes: list[Fix] = []
    rejected: list[tuple[int, ContractError]] = []
    for n, pt in enumerate(root.iter(), start=1):
        if not pt.tag.endswith("trkpt"):
            continue
        time_el = next((c for c in pt if c.tag.endswith("time")), None)
        try:
            if time_el is None or not time_el.text:
                raise ContractError("missing_field", "ts", None, "GPX point without <time>")
            ts = parse_timestamp(time_el.text)
            fixes.append(
                _fix_from_point(ident, len(fixes) + 1, ts, float(pt.attrib["lat"]), float(pt.attrib["lon"]),
                                fixes[-1] if fixes else None)
            )  # fmt: skip
        except ContractError as exc:
            rejected.append((n, exc))
    return Track(fixes, rejected)


def read_jsonl(path: Path, ident: Identity | None = None) -> Track:
    """Telemetry fix v1 lines (e.g. a world's fixes.jsonl); ``ident`` re-labels them as one device."""
    fixes: list[Fix] = []
    rejected: list[tuple[int, ContractError]] = []
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                fix = parse_fix(line)
            except ContractError as exc:
                rejected.append((line_no, exc))
                continue
            if ident is not None:
                fix = replace(fix, device_id=ident.device_id, vehicle_id=ident.vehicle_id, seq=len(fixes) + 1)
            fixes.append(fix)
    return Track(fixes, rejected)


def read_track(path: Path, ident: Identity | None) -> Track:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path, ident)
    if ident is None:
        raise ValueError("CSV and GPX tracks need --device and --vehicle (they carry no identity)")
    if suffix == ".csv":
        return read_csv(path, ident)
    if suffix == ".gpx":
        return read_gpx(path, ident)
    raise ValueError(f"{path}: unknown track format {suffix!r} (use .csv, .gpx or .jsonl)")


def schedule(
    fixes: list[Fix], speedup: float, shift_to: datetime | None = None
) -> Iterator[tuple[float, Fix]]:
    """(seconds after start to send, fix): real time at speedup 1, accelerated above, 0 = no waiting.

    With ``shift_to`` every timestamp moves by the same amount so the track starts then
    (a recorded track replayed "live").
    """
    if not fixes:
        return
    t0 = fixes[0].ts
    delta = (shift_to - t0) if shift_to is not None else timedelta(0)
    for f in fixes:
        due = (f.ts - t0).total_seconds() / speedup if speedup > 0 else 0.0
        yield due, (replace(f, ts=f.ts + delta) if delta else f)

"""Turn a decoded JT/T 808 location into a telemetry fix v1, validated by the one contract parser.

The identity never comes from the frame alone: ``device_id`` is the terminal the connection
authenticated as, ``vehicle_id`` is what the registry says that terminal is fitted to.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetwatch.records import Fix, parse_fix
from ingest.jt808.messages import Location


def fix_seq(loc: Location) -> int:
    """The fix's ``seq``: its time in Unix seconds.

    JT/T 808's flow number counts messages (a 0x0704 batch holds many fixes under one number)
    and wraps at 65,536, so it cannot be a per-device increasing fix number. The fix time
    can: a terminal stamps at most one fix per second, and a re-sent report (no 0x8001 came
    back) carries the same time, so the pipeline's (device, seq) dedup drops it as a duplicate.
    """
    return int(loc.time.timestamp())


def location_to_fix(
    loc: Location,
    *,
    device_id: str,
    vehicle_id: str,
    now: datetime,
    max_future: timedelta,
    max_speed_kmh: float,
) -> Fix:
    """Map and validate; raises `fleetwatch.records.ContractError` exactly as the MQTT bridge would."""
    record: dict[str, object] = {
        "v": 1,
        "device_id": device_id,
        "vehicle_id": vehicle_id,
        "ts": loc.time.isoformat(),  # GMT+8 as RFC 3339: ...+08:00
        "lat": loc.lat,
        "lon": loc.lon,
        "speed_kmh": loc.speed_kmh,
        "heading": loc.heading,
        "acc": loc.acc,  # status bit 0
        "seq": fix_seq(loc),
        "odometer_km": loc.mileage_km,
        "alt_m": loc.alt_m,
        "sats": loc.sats,
        "alarm": loc.alarm,  # JT/T 808 numbering, unchanged (DESIGN §7)
        "fix_valid": loc.positioned,  # status bit 1
    }
    return parse_fix(record, now=now, max_future=max_future, max_speed_kmh=max_speed_kmh)

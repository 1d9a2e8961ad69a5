"""The registry as product data: org tree, vehicles and devices, upserted in dependency order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True, slots=True)
class OrgRow:
    org_id: str
    name: str
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class VehicleRow:
    vehicle_id: str
    org: str
    depot: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device_id: str
    vehicle_id: str


def _parents_first(orgs: Iterable[OrgRow]) -> list[OrgRow]:
    pending = {o.org_id: o for o in orgs}
    ordered: list[OrgRow] = []
    placed: set[str] = set()
    while pending:
        ready = [
            o
            for o in pending.values()
            if o.parent_id is None or o.parent_id in placed or o.parent_id not in pending
        ]
        if not ready:
            raise ValueError(f"org tree has a cycle among {sorted(pending)}")
        for org in sorted(ready, key=lambda o: o.org_id):
            ordered.append(org)
            placed.add(org.org_id)
            del pending[org.org_id]
    return ordered


def upsert_registry(
    conn: psycopg.Connection[tuple[object, ...]],
    orgs: Iterable[OrgRow] = (),
    vehicles: Iterable[VehicleRow] = (),
    devices: Iterable[DeviceRow] = (),
) -> tuple[int, int, int]:
    """Insert or update orgs (parents first), vehicles and devices in one transaction; return counts."""
    org_rows = _parents_first(orgs)
    vehicle_rows = list(vehicles)
    device_rows = list(devices)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orgs (org_id, name, parent_id) VALUES (%s, %s, %s) ON CONFLICT (org_id) DO UPDATE "
            "SET name = EXCLUDED.name, parent_id = EXCLUDED.parent_id, updated_at = now()",
            [(o.org_id, o.name, o.parent_id) for o in org_rows],
        )
        cur.executemany(
            "INSERT INTO vehicles (vehicle_id, org, depot) VALUES (%s, %s, %s) ON CONFLICT (vehicle_id) "
            "DO UPDATE SET org = EXCLUDED.org, depot = EXCLUDED.depot, updated_at = now()",
            [(v.vehicle_id, v.org, v.depot) for v in vehicle_rows],
        )
        cur.executemany(
            "INSERT INTO devices (device_id, vehicle_id) VALUES (%s, %s) ON CONFLICT (device_id) "
            "DO UPDATE SET vehicle_id = EXCLUDED.vehicle_id, updated_at = now()",
            [(d.device_id, d.vehicle_id) for d in device_rows],
        )
    return len(org_rows), len(vehicle_rows), len(device_rows)


def known_orgs(conn: psycopg.Connection[tuple[object, ...]], org_ids: Iterable[str]) -> set[str]:
    """Which of ``org_ids`` are in the org tree."""
    rows = conn.execute("SELECT org_id FROM orgs WHERE org_id = ANY(%s)", (list(org_ids),)).fetchall()
    return {str(r[0]) for r in rows}


def delete_devices(conn: psycopg.Connection[tuple[object, ...]], device_ids: Iterable[str]) -> list[str]:
    """Remove device rows (their vehicles stay: positions and alerts refer to them); return those removed."""
    with conn.transaction():
        rows = conn.execute(
            "DELETE FROM devices WHERE device_id = ANY(%s) RETURNING device_id", (list(device_ids),)
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    device_id: str
    vehicle_id: str
    org: str
    org_name: str
    depot: str | None
    updated_at: datetime


def registered_devices(
    conn: psycopg.Connection[tuple[object, ...]], org: str | None = None
) -> list[RegisteredDevice]:
    """Every device with its vehicle and org (``org``: only that org's subtree), by device id."""
    rows = conn.execute(
        "WITH RECURSIVE tree AS (SELECT org_id FROM orgs WHERE %(org)s::text IS NULL OR org_id = %(org)s "
        "UNION SELECT o.org_id FROM orgs o JOIN tree t ON o.parent_id = t.org_id) "
        "SELECT d.device_id, d.vehicle_id, v.org, o.name, v.depot, d.updated_at FROM devices d "
        "JOIN vehicles v USING (vehicle_id) JOIN orgs o ON o.org_id = v.org "
        "WHERE v.org IN (SELECT org_id FROM tree) ORDER BY d.device_id",
        {"org": org},
    ).fetchall()
    return [RegisteredDevice(*(r)) for r in rows]  # type: ignore[arg-type]

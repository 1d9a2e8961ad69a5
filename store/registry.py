"""The registry as product data: org tree, vehicles and devices, upserted in dependency order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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

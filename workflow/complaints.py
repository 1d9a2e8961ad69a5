"""Citizens' complaints (12345 hotline): a case due in N days, linked to the evidence bundle made for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from evidence.build import build_evidence
from evidence.query import VehicleEvidence
from evidence.report import Bundle
from geofence import Rules
from store import audit
from workflow.alerts import Conn, WorkflowError


@dataclass(frozen=True, slots=True)
class Complaint:
    complaint_id: int
    vehicle_id: str
    org: str
    observed_at: datetime
    lat: float
    lon: float
    due_at: datetime
    bundle: Bundle
    vehicles: list[VehicleEvidence]


def add_complaint(
    conn: Conn,
    *,
    plate: str,
    observed_at: datetime,
    lat: float,
    lon: float,
    given_datum: str,
    given: tuple[float, float],
    text: str,
    created_by: str,
    due_days: int,
    evidence_root: Path,
    window: timedelta,
    radius_m: float,
    timezone: str,
    rules: Rules | None = None,
    now: datetime | None = None,
) -> Complaint:
    """Open the case, build its evidence (the plate, ``window`` either side, near the place) and link it."""
    if not text.strip():
        raise WorkflowError("--text: the complaint's text is required")
    registered = conn.execute("SELECT org FROM vehicles WHERE vehicle_id = %s", (plate,)).fetchone()
    org = str(registered[0]) if registered else "unregistered"
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO complaints (vehicle_id, org, observed_at, lat, lon, given_datum, given_lat,"
            " given_lon,"
            " text, created_by, created_at, due_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " coalesce(%s, now()), coalesce(%s, now()) + make_interval(days => %s))"
            " RETURNING complaint_id, due_at",
            (
                plate,
                org,
                observed_at,
                lat,
                lon,
                given_datum,
                given[0],
                given[1],
                text,
                created_by,
                now,
                now,
                due_days,
            ),
        ).fetchone()
        assert row is not None
        complaint_id, due_at = int(row[0]), row[1]
        bundle, vehicles = build_evidence(
            conn,
            out_dir=evidence_root / f"complaint-{complaint_id}",
            start=observed_at - window,
            end=observed_at + window,
            timezone=timezone,
            generated_by=created_by,
            plate=plate,
            near=(lat, lon),
            radius_m=radius_m,
            rules=rules,
            title=f"Complaint #{complaint_id}: {plate}",
            now=now,
        )
        conn.execute(
            "UPDATE complaints SET evidence_path = %s, evidence_sha256 = %s WHERE complaint_id = %s",
            (str(bundle.directory), bundle.manifest_sha256, complaint_id),
        )
        audit.record(conn, actor=created_by, action="complaint.opened", target=f"complaint:{complaint_id}",
                     detail={"plate": plate, "org": org, "observed_at": observed_at.isoformat(),
                             "evidence_sha256": bundle.manifest_sha256})
    return Complaint(complaint_id, plate, org, observed_at, lat, lon, due_at, bundle, vehicles)

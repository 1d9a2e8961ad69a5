"""Device rows for `fleetwatch devices add`: the CSV format and its checks (errors name row and field)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fleetwatch.records import DEVICE_ID_RE

#: Columns of a devices CSV; the first three are required.
REQUIRED_COLUMNS = ("device_id", "vehicle_id", "org")
OPTIONAL_COLUMNS = ("depot", "password")
#: The fix contract's limit on vehicle_id (a plate with its province character fits easily).
VEHICLE_ID_MAX = 16
PASSWORD_MIN = 12
PASSWORD_MAX = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """One terminal to register: its vehicle, the vehicle's org and depot, an optional password.

    Without a password the product generates one per device (`registry.device_password`).
    ``row`` is the CSV line the entry came from (0 when built in code), for error messages.
    """

    device_id: str
    vehicle_id: str
    org: str
    depot: str | None = None
    password: str | None = field(default=None, repr=False)
    row: int = 0


class RowError(ValueError):
    """One bad value: which row, which field, which value, why (a password is never shown)."""

    def __init__(self, row: int, field_name: str, value: object, reason: str) -> None:
        self.row, self.field, self.value, self.reason = row, field_name, value, reason
        shown = "(hidden)" if field_name == "password" else repr(value)
        where = f"row {row}: " if row else ""
        super().__init__(f"{where}field {field_name!r} = {shown}: {reason}")


class RegistryInputError(ValueError):
    """Every problem found in the input; nothing was written."""

    def __init__(self, errors: list[RowError], source: str = "input") -> None:
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{source}: {len(errors)} problem(s), nothing registered:\n{lines}{more}")


def read_devices_csv(path: Path) -> list[DeviceEntry]:
    """The rows of a devices CSV (header: device_id,vehicle_id,org[,depot][,password]), checked.

    Raises RegistryInputError listing every bad row (row = line number in the file).
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        errors: list[RowError] = []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown or len(set(header)) != len(header):
            reason = (f"missing {', '.join(missing)}; " if missing else "") + (
                f"unknown {', '.join(unknown)}; " if unknown else ""
            )
            raise RegistryInputError([RowError(
                1, "header", ",".join(header),
                f"{reason}expected {','.join(REQUIRED_COLUMNS)} and optionally {','.join(OPTIONAL_COLUMNS)}, "
                "each once")], str(path))  # fmt: skip
        entries: list[DeviceEntry] = []
        for values in reader:
            row = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(values) != len(header):
                errors.append(
                    RowError(
                        row,
                        "row",
                        ",".join(values),
                        f"has {len(values)} fields, the header has {len(header)}",
                    )
                )
                continue
            cells = {name: value.strip() for name, value in zip(header, values, strict=True)}
            entries.append(DeviceEntry(
                cells["device_id"], cells["vehicle_id"], cells["org"], cells.get("depot") or None,
                cells.get("password") or None, row,
            ))  # fmt: skip
    errors += validate_entries(entries)
    if errors:
        raise RegistryInputError(sorted(errors, key=lambda e: e.row), str(path))
    return entries


def validate_entries(entries: Iterable[DeviceEntry], reserved: Iterable[str] = ()) -> list[RowError]:
    """Every problem in ``entries`` (empty when all are good); ``reserved`` are service account names."""
    reserved_names = set(reserved)
    errors: list[RowError] = []
    first_row: dict[str, int] = {}
    vehicle_org: dict[str, tuple[str, int]] = {}
    for e in entries:
        if not DEVICE_ID_RE.match(e.device_id):
            errors.append(
                RowError(
                    e.row,
                    "device_id",
                    e.device_id,
                    "must be 1-64 of A-Z a-z 0-9 _ . - (it is an MQTT username and topic level)",
                )
            )
        elif e.device_id in reserved_names or e.device_id.startswith("svc-"):
            errors.append(RowError(e.row, "device_id", e.device_id, "reserved for service accounts"))
        elif e.device_id in first_row:
            errors.append(
                RowError(e.row, "device_id", e.device_id, f"listed twice (also row {first_row[e.device_id]})")
            )
        else:
            first_row[e.device_id] = e.row
        if not e.vehicle_id or len(e.vehicle_id) > VEHICLE_ID_MAX or _CONTROL.search(e.vehicle_id):
            errors.append(
                RowError(
                    e.row,
                    "vehicle_id",
                    e.vehicle_id,
                    f"must be 1-{VEHICLE_ID_MAX} characters without control characters",
                )
            )
        if not e.org or any(c.isspace() for c in e.org) or len(e.org) > 64:
            errors.append(RowError(e.row, "org", e.org, "must be an org id: 1-64 characters, no spaces"))
        elif e.vehicle_id:
            seen = vehicle_org.setdefault(e.vehicle_id, (e.org, e.row))
            if seen[0] != e.org:
                errors.append(
                    RowError(
                        e.row,
                        "org",
                        e.org,
                        f"vehicle {e.vehicle_id!r} is in org {seen[0]!r} on row {seen[1]}",
                    )
                )
        if e.depot is not None and (len(e.depot) > 64 or _CONTROL.search(e.depot)):
            errors.append(RowError(e.row, "depot", e.depot, "must be at most 64 characters"))
        if e.password is not None and not (
            PASSWORD_MIN <= len(e.password) <= PASSWORD_MAX and not _CONTROL.search(e.password)
        ):
            errors.append(
                RowError(
                    e.row,
                    "password",
                    e.password,
                    f"must be {PASSWORD_MIN}-{PASSWORD_MAX} characters without control "
                    "characters (leave it empty to have one generated)",
                )
            )
    return errors

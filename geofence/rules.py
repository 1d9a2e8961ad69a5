"""The rules configuration (rules.yaml v1): org tree with inherited settings, vehicles, zones."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from fleetwatch.records import AlertType
from fleetwatch.settings import ORG_DEFAULTS as D
from geofence.index import ZoneIndex
from geofence.workcalendar import OfficeHours, WorkCalendar, YearSchedule
from geofence.zones import SENSITIVE_CATEGORIES, Zone, ZoneError, load_zone_file

RULES_VERSION = 1
UNREGISTERED_ORG = "unregistered"

#: Red (三色预警) thresholds per alert type, on the measure its detector grades by: dwell seconds
#: (private_destination), metres driven outside working time (off_hours), seconds outside the
#: region (out_of_area), peak km/h (overspeed), silent seconds (offline). An alert that qualifies
#: is yellow; red once its measure reaches the threshold. A type without one stays yellow.
DEFAULT_SEVERITY_RED: Mapping[str, float] = MappingProxyType(
    {
        AlertType.PRIVATE_DESTINATION.value: 1800.0,
        AlertType.OFF_HOURS.value: 20000.0,
        AlertType.OUT_OF_AREA.value: 1800.0,
        AlertType.OVERSPEED.value: 150.0,
        AlertType.OFFLINE.value: 3600.0,
    }
)


class RulesError(ValueError):
    """A rules.yaml problem: the file, the key path (e.g. orgs[2].settings.office_hours.start), why."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source = source
        self.path = path
        self.reason = reason
        super().__init__(f"{source}: {path}: {reason}" if path else f"{source}: {reason}")


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """Detection settings of one org after inheritance (defaults: `fleetwatch.settings.ORG_DEFAULTS`)."""

    timezone: str = D.timezone
    office_hours: OfficeHours = field(default_factory=lambda: OfficeHours(D.office_start, D.office_end))
    permitted_region: str | None = None
    sensitive_categories: frozenset[str] = frozenset(SENSITIVE_CATEGORIES)
    stop_seconds: float = D.stop_seconds
    min_trip_seconds: float = D.min_trip_seconds
    min_trip_meters: float = D.min_trip_meters
    off_hours_min_seconds: float = D.off_hours_min_seconds
    off_hours_min_meters: float = D.off_hours_min_meters
    region_buffer_m: float = D.region_buffer_m
    out_of_area_min_seconds: float = D.out_of_area_min_seconds
    out_of_area_min_fixes: int = D.out_of_area_min_fixes
    stationary_speed_kmh: float = D.stationary_speed_kmh
    dwell_min_seconds: float = D.dwell_min_seconds
    depot_check_time: time = D.depot_check_time
    overspeed_kmh: float = D.overspeed_kmh
    overspeed_min_seconds: float = D.overspeed_min_seconds
    offline_after_seconds: float = D.offline_after_seconds
    lateness_seconds: float = D.lateness_seconds
    orders_required: bool = False
    severity_red: Mapping[str, float] = field(default_factory=lambda: DEFAULT_SEVERITY_RED)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_SETTING_NAMES = {f.name for f in fields(OrgSettings)}
#: On/off settings (read as YAML booleans): found by their default, so a new one needs no reader.
_FLAG_NAMES = {f.name for f in fields(OrgSettings) if isinstance(f.default, bool)}


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    parent: str | None
    settings: OrgSettings


@dataclass(frozen=True, slots=True)
class Vehicle:
    vehicle_id: str
    device_id: str
    org: str
    depot: str | None


@dataclass(frozen=True)
class Rules:
    """Everything detection needs to know about the world, loaded and cross-checked."""

    source: str
    timezone: str
    orgs: Mapping[str, Org]
    vehicles: Mapping[str, Vehicle]
    zones: ZoneIndex
    calendar: WorkCalendar
    defaults: OrgSettings = field(default_factory=OrgSettings)

    def vehicle(self, vehicle_id: str) -> Vehicle | None:
        return self.vehicles.get(vehicle_id)

    def org_of(self, vehicle_id: str) -> str:
        v = self.vehicles.get(vehicle_id)
        return v.org if v else UNREGISTERED_ORG

    def settings_for(self, vehicle_id: str) -> OrgSettings:
        """An unregistered vehicle gets the top-level defaults (and org "unregistered")."""
        v = self.vehicles.get(vehicle_id)
        return self.orgs[v.org].settings if v else self.defaults

    def region_of(self, vehicle_id: str) -> Zone | None:
        region = self.settings_for(vehicle_id).permitted_region
        return self.zones.get(region) if region else None

    def depot_of(self, vehicle_id: str) -> Zone | None:
        v = self.vehicles.get(vehicle_id)
        return self.zones.get(v.depot) if v and v.depot else None


#: libyaml's parser where PyYAML was built with it: the pure-Python one takes ~2 s on a file of
#: 3,000 nested brackets (found by bench/bench_fuzz.py); the constructor (safe) is the same.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_rules(path: str | Path) -> Rules:
    """Load rules.yaml; zone files are resolved relative to it. Raises RulesError / ZoneError."""
    path = Path(path)
    source = path.name
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise RulesError(str(path), "", "file not found") from None
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        raise RulesError(source, "", f"not UTF-8 text: {bad}") from None
    except yaml.YAMLError as exc:
        raise RulesError(source, "", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise RulesError(source, "", "nested too deeply to be a rules file") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (4300)
        raise RulesError(source, "", f"not a usable value: {exc}") from None
    return parse_rules(doc, source=source, base_dir=path.parent)


def parse_rules(doc: Any, *, source: str = "rules.yaml", base_dir: Path | None = None) -> Rules:
    r = _Reader(source)
    top = r.mapping(doc, "")
    version = top.get("version")
    if version != RULES_VERSION:
        raise RulesError(source, "version", f"must be {RULES_VERSION} (got {version!r})")
    timezone = r.tz(top.get("timezone", "Asia/Shanghai"), "timezone")
    calendar = _calendar(r, top.get("calendar"))
    zones = _zones(r, top.get("zone_files", []), base_dir or Path("."))
    defaults = OrgSettings(timezone=timezone)
    orgs = _orgs(r, top.get("orgs"), defaults, zones)
    vehicles = _vehicles(r, top.get("vehicles", []), orgs, zones)
    unknown = set(top) - {"version", "timezone", "calendar", "zone_files", "orgs", "vehicles"}
    if unknown:
        raise RulesError(source, sorted(unknown)[0], "unknown key")
    return Rules(source, timezone, orgs, vehicles, zones, calendar, defaults)


class _Reader:
    """Typed readers that raise RulesError with the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> RulesError:
        return RulesError(self.source, path, reason)

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        return value

    def listing(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_show(value)}")
        return value

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"{_show(value)} is not a non-empty string")
        return value

    def flag(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"{_show(value)} is not true or false")
        return value

    def number(self, value: Any, path: str, minimum: float = 0.0) -> float:
        # NaN compares false with everything, so `value < minimum` alone would let `.nan` through.
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not value >= minimum):  # fmt: skip
            raise self.fail(path, f"{_show(value)} is not a number >= {minimum:g}")
        return float(value)

    def time_of_day(self, value: Any, path: str) -> time:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 08:00 as the sexagesimal integer 480.
            value = f"{value // 60:02d}:{value % 60:02d}"
        if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
            hh, mm = (int(p) for p in value.strip().split(":"))
            if hh < 24 and mm < 60:
                return time(hh, mm)
        raise self.fail(path, f"{_show(value)} is not a time (HH:MM)")

    def day(self, value: Any, path: str) -> date:
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(path, f"{_show(value)} is not a date (YYYY-MM-DD)")

    def tz(self, value: Any, path: str) -> str:
        name = self.text(value, path)
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("Asia"), too long
            raise self.fail(path, f"{name!r} is not a known time zone") from None
        return name


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _calendar(r: _Reader, raw: Any) -> WorkCalendar:
    if raw is None:
        return WorkCalendar()
    cal = r.mapping(raw, "calendar")
    years_raw = r.mapping(cal.get("years", {}), "calendar.years")
    years: dict[int, YearSchedule] = {}
    for key, spec in years_raw.items():
        path = f"calendar.years.{key}"
        try:
            year = int(key)
        except (TypeError, ValueError, OverflowError):  # OverflowError: .inf
            raise r.fail(path, f"{_show(key)} is not a year") from None
        body = r.mapping(spec, path)
        days: dict[str, frozenset[date]] = {}
        for kind in ("holidays", "workdays"):
            items = r.listing(body.get(kind, []), f"{path}.{kind}")
            parsed = [r.day(d, f"{path}.{kind}[{i}]") for i, d in enumerate(items)]
            for i, d in enumerate(parsed):
                if d.year != year:
                    raise r.fail(f"{path}.{kind}[{i}]", f"{d.isoformat()} is not in {year}")
            days[kind] = frozenset(parsed)
        both = days["holidays"] & days["workdays"]
        if both:
            raise r.fail(path, f"{min(both).isoformat()} is both a holiday and a workday")
        years[year] = YearSchedule(days["holidays"], days["workdays"])
    return WorkCalendar(years)


def _zones(r: _Reader, raw: Any, base_dir: Path) -> ZoneIndex:
    files = r.listing(raw, "zone_files")
    zones: list[Zone] = []
    for i, item in enumerate(files):
        name = r.text(item, f"zone_files[{i}]")
        file_path = base_dir / name
        try:
            present = file_path.exists()
        except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
            raise r.fail(f"zone_files[{i}]", f"{name[:80]!r} is not a usable file name ({exc})") from None
        if not present:
            raise r.fail(f"zone_files[{i}]", f"{name!r} not found (relative to {r.source})")
        zones.extend(load_zone_file(file_path, display_name=name))
    try:
        return ZoneIndex(zones)
    except ValueError as exc:
        raise ZoneError("zone_files", None, str(exc)) from None


def _settings(r: _Reader, raw: Any, path: str, parent: OrgSettings, zones: ZoneIndex) -> OrgSettings:
    if raw is None:
        return parent
    body = r.mapping(raw, path)
    changes: dict[str, Any] = {}
    for key, value in body.items():
        kp = f"{path}.{key}"
        if key not in _SETTING_NAMES:
            raise r.fail(kp, "unknown setting")
        if key == "timezone":
            changes[key] = r.tz(value, kp)
        elif key == "office_hours":
            oh = r.mapping(value, kp)
            start = r.time_of_day(oh.get("start", "08:00"), f"{kp}.start")
            end = r.time_of_day(oh.get("end", "18:00"), f"{kp}.end")
            if end <= start:
                raise r.fail(f"{kp}.end", f"office hours must end after they start ({start:%H:%M})")
            changes[key] = OfficeHours(start, end)
        elif key == "permitted_region":
            if value is None:
                changes[key] = None
                continue
            zone_id = r.text(value, kp)
            if zone_id not in zones or zones.get(zone_id).kind != "region":
                raise r.fail(kp, f"{zone_id!r} is not a zone of kind 'region' in zone_files")
            changes[key] = zone_id
        elif key == "sensitive_categories":
            cats = r.listing(value, kp)
            for i, c in enumerate(cats):
                if c not in SENSITIVE_CATEGORIES:
                    raise r.fail(f"{kp}[{i}]", f"{_show(c)} is not one of {', '.join(SENSITIVE_CATEGORIES)}")
            changes[key] = frozenset(cats)
        elif key == "depot_check_time":
            changes[key] = r.time_of_day(value, kp)
        elif key == "severity_red":
            reds = dict(parent.severity_red)
            for kind, threshold in r.mapping(value, kp).items():
                if kind not in {t.value for t in AlertType}:
                    raise r.fail(f"{kp}.{kind}", "not an alert type")
                reds[kind] = r.number(threshold, f"{kp}.{kind}")
            changes[key] = MappingProxyType(reds)
        elif key in _FLAG_NAMES:
            changes[key] = r.flag(value, kp)
        elif key == "out_of_area_min_fixes":
            changes[key] = int(r.number(value, kp, 1))
        else:
            changes[key] = r.number(value, kp)
    return replace(parent, **changes)


def _orgs(r: _Reader, raw: Any, defaults: OrgSettings, zones: ZoneIndex) -> dict[str, Org]:
    items = r.listing(raw, "orgs")
    orgs: dict[str, Org] = {}
    for i, item in enumerate(items):
        path = f"orgs[{i}]"
        body = r.mapping(item, path)
        org_id = r.text(body.get("id"), f"{path}.id")
        if org_id in orgs:
            raise r.fail(f"{path}.id", f"duplicate org id {org_id!r}")
        parent_id = body.get("parent")
        if parent_id is None:
            base = defaults
        else:
            parent_id = r.text(parent_id, f"{path}.parent")
            if parent_id not in orgs:
                raise r.fail(f"{path}.parent", f"unknown org {parent_id!r} (parents must be listed first)")
            base = orgs[parent_id].settings
        settings = _settings(r, body.get("settings"), f"{path}.settings", base, zones)
        name = str(body.get("name") or org_id)
        orgs[org_id] = Org(org_id, name, parent_id, settings)
    return orgs


def _vehicles(r: _Reader, raw: Any, orgs: Mapping[str, Org], zones: ZoneIndex) -> dict[str, Vehicle]:
    items = r.listing(raw, "vehicles")
    vehicles: dict[str, Vehicle] = {}
    devices: set[str] = set()
    for i, item in enumerate(items):
        path = f"vehicles[{i}]"
        body = r.mapping(item, path)
        vid = r.text(body.get("vehicle_id"), f"{path}.vehicle_id")
        did = r.text(body.get("device_id"), f"{path}.device_id")
        org = r.text(body.get("org"), f"{path}.org")
        if vid in vehicles:
            raise r.fail(f"{path}.vehicle_id", f"duplicate vehicle {vid!r}")
        if did in devices:
            raise r.fail(f"{path}.device_id", f"device {did!r} is already fitted to another vehicle")
        if org not in orgs:
            raise r.fail(f"{path}.org", f"unknown org {org!r}")
        depot = body.get("depot")
        if depot is not None:
            depot = r.text(depot, f"{path}.depot")
            if depot not in zones or zones.get(depot).kind != "depot":
                raise r.fail(f"{path}.depot", f"{depot!r} is not a zone of kind 'depot' in zone_files")
        devices.add(did)
        vehicles[vid] = Vehicle(vid, did, org, depot)
    return vehicles

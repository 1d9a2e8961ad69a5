"""Zones (GeoJSON, datum-aware), spatial index, the work calendar and the rules configuration."""

from geofence.datum import Datum, gcj02_to_wgs84, wgs84_to_gcj02
from geofence.index import ZoneIndex
from geofence.projection import LocalFrame, haversine_m
from geofence.rules import Org, OrgSettings, Rules, RulesError, Vehicle, load_rules, parse_rules
from geofence.workcalendar import CalendarError, OfficeHours, WorkCalendar, YearSchedule
from geofence.zones import Zone, ZoneError, circle_zone, load_zone_file, make_zone, parse_zone_collection

__all__ = [
    "CalendarError",
    "Datum",
    "LocalFrame",
    "OfficeHours",
    "Org",
    "OrgSettings",
    "Rules",
    "RulesError",
    "Vehicle",
    "WorkCalendar",
    "YearSchedule",
    "Zone",
    "ZoneError",
    "ZoneIndex",
    "circle_zone",
    "gcj02_to_wgs84",
    "haversine_m",
    "load_rules",
    "load_zone_file",
    "make_zone",
    "parse_rules",
    "parse_zone_collection",
    "wgs84_to_gcj02",
]

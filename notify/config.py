"""The routing YAML: named channels, and routes (org -> managers, channels, severity, quiet hours)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from fleetwatch.records import Severity

SEVERITY_RANK = {s.value: s.rank for s in Severity}
CHANNEL_TYPES = ("webhook", "dingtalk", "wecom", "email", "mqtt")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class RoutingError(ValueError):
    """The routing file is wrong: which file, which entry, which value, why."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        super().__init__(f"{source}: {path}: {reason}")


@dataclass(frozen=True, slots=True)
class Manager:
    name: str
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One configured channel. ``secret`` was resolved from ``secret_env`` (never written in YAML)."""

    name: str
    type: str
    url: str | None = None
    secret: str | None = field(default=None, repr=False)
    #: Messages per minute this channel may send (DingTalk documents 20/min per robot).
    rate_per_minute: float = 60.0


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    #: Red alerts are not held.
    except_red: bool = True

    def release_at(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """When a message produced at ``now`` may go out, or None if ``now`` is not quiet."""
        local = now.astimezone(tz)
        t = local.time()
        overnight = self.start > self.end
        quiet = (t >= self.start or t < self.end) if overnight else (self.start <= t < self.end)
        if not quiet:
            return None
        release = datetime.combine(local.date(), self.end, tzinfo=tz)
        if release <= local:
            release += timedelta(days=1)
        return release


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    org: str
    include_suborgs: bool
    channels: tuple[str, ...]
    managers: tuple[Manager, ...] = ()
    min_severity: str = "yellow"
    quiet_hours: QuietHours | None = None

    def wants(self, severity: str) -> bool:
        return SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]


@dataclass(frozen=True, slots=True)
class Routing:
    channels: dict[str, ChannelSpec]
    routes: tuple[Route, ...]

    def for_org(self, org: str, ancestors: tuple[str, ...]) -> list[Route]:
        """Routes an alert of ``org`` goes to (``ancestors``: its parent, grandparent, ...)."""
        return [r for r in self.routes if r.org == org or (r.include_suborgs and r.org in ancestors)]

    def for_escalation(self, parent_org: str) -> list[Route]:
        """Routes of exactly the org above: an escalation goes one level up."""
        return [r for r in self.routes if r.org == parent_org]


def _text(doc: dict[str, Any], key: str, source: str, path: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise RoutingError(source, f"{path}.{key}", "required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise RoutingError(source, f"{path}.{key}", f"expected a non-empty string, got {value!r}")
    return value


def _clock(value: Any, source: str, path: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise RoutingError(source, path, f"expected HH:MM, got {value!r}") from None


def _channel(name: str, doc: Any, source: str, env: dict[str, str]) -> ChannelSpec:
    path = f"channels.{name}"
    if not isinstance(doc, dict):
        raise RoutingError(source, path, "expected a mapping")
    kind = doc.get("type")
    if kind not in CHANNEL_TYPES:
        raise RoutingError(source, f"{path}.type", f"{kind!r} is not one of {', '.join(CHANNEL_TYPES)}")
    url = _text(doc, "url", source, path, required=kind in ("webhook", "dingtalk", "wecom"))
    secret = None
    secret_env = _text(doc, "secret_env", source, path, required=kind == "webhook")
    if secret_env is not None:
        secret = env.get(secret_env)
        if not secret:
            raise RoutingError(source, f"{path}.secret_env", f"environment variable {secret_env} is not set")
    rate = doc.get("rate_per_minute", 20.0 if kind in ("dingtalk", "wecom") else 60.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise RoutingError(source, f"{path}.rate_per_minute", f"expected a positive number, got {rate!r}")
    return ChannelSpec(name=name, type=kind, url=url, secret=secret, rate_per_minute=float(rate))


def _route(index: int, doc: Any, channels: dict[str, ChannelSpec], source: str) -> Route:
    path = f"routes[{index}]"
    if not isinstance(doc, dict):
        raise RoutingError(source, path, "expected a mapping")
    name = _text(doc, "name", source, path)
    assert name is not None
    if not _NAME_RE.match(name):
        raise RoutingError(source, f"{path}.name", f"{name!r}: use letters, digits, '.', '_' or '-'")
    org = _text(doc, "org", source, path)
    assert org is not None
    names = doc.get("channels")
    if not isinstance(names, list) or not names:
        raise RoutingError(source, f"{path}.channels", "expected a non-empty list of channel names")
    for channel in names:
        if channel not in channels:
            raise RoutingError(source, f"{path}.channels", f"{channel!r} is not defined under channels")
    severity = doc.get("min_severity", "yellow")
    if severity not in SEVERITY_RANK:
        raise RoutingError(source, f"{path}.min_severity", f"{severity!r} is not yellow or red")
    managers = []
    for i, m in enumerate(doc.get("managers") or []):
        if not isinstance(m, dict):
            raise RoutingError(source, f"{path}.managers[{i}]", "expected a mapping")
        manager_name = _text(m, "name", source, f"{path}.managers[{i}]")
        assert manager_name is not None
        managers.append(Manager(manager_name, m.get("email"), m.get("mobile")))
    if any(channels[c].type == "email" for c in names) and not any(m.email for m in managers):
        raise RoutingError(source, f"{path}.managers", "an e-mail channel needs managers with an email")
    quiet = None
    if (q := doc.get("quiet_hours")) is not None:
        if not isinstance(q, dict):
            raise RoutingError(source, f"{path}.quiet_hours", "expected start, end (HH:MM) and except_red")
        start = _clock(q.get("start"), source, f"{path}.quiet_hours.start")
        end = _clock(q.get("end"), source, f"{path}.quiet_hours.end")
        if start == end:
            raise RoutingError(source, f"{path}.quiet_hours", "start equals end")
        quiet = QuietHours(start, end, bool(q.get("except_red", True)))
    return Route(
        name=name,
        org=org,
        include_suborgs=bool(doc.get("include_suborgs", True)),
        channels=tuple(names),
        managers=tuple(managers),
        min_severity=severity,
        quiet_hours=quiet,
    )


def parse_routing(doc: Any, *, source: str = "notify.yaml", env: dict[str, str] | None = None) -> Routing:
    if not isinstance(doc, dict):
        raise RoutingError(source, "(top)", "expected a mapping with channels and routes")
    env = dict(os.environ) if env is None else env
    raw_channels = doc.get("channels")
    if not isinstance(raw_channels, dict) or not raw_channels:
        raise RoutingError(source, "channels", "expected a non-empty mapping of channel name -> settings")
    channels = {str(n): _channel(str(n), c, source, env) for n, c in raw_channels.items()}
    raw_routes = doc.get("routes")
    if not isinstance(raw_routes, list) or not raw_routes:
        raise RoutingError(source, "routes", "expected a non-empty list")
    routes = tuple(_route(i, r, channels, source) for i, r in enumerate(raw_routes))
    seen: set[str] = set()
    for r in routes:
        if r.name in seen:
            raise RoutingError(source, "routes", f"route name {r.name!r} is used twice")
        seen.add(r.name)
    return Routing(channels, routes)


def load_routing(path: Path) -> Routing:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoutingError(str(path), "(file)", "not found (set FLEETWATCH_NOTIFY_ROUTES)") from None
    except yaml.YAMLError as exc:
        raise RoutingError(str(path), "(file)", f"not valid YAML: {exc}") from None
    return parse_routing(doc, source=str(path))

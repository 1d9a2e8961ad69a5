"""The worker's rules (rules.yaml, the zone files next to it, the org tree): loaded at start,
reloaded on SIGHUP or when a file changes; a bad new version is rejected and the old one stays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geofence import Rules, load_rules
from geofence.rules import RulesError
from geofence.zones import ZoneError


@dataclass(frozen=True)
class Reload:
    rules: Rules | None  # None: rejected
    error: str | None = None


class RulesWatch:
    """Watches rules.yaml and every file in its directory tree (zone files live next to it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._fingerprint()

    def load(self) -> Rules:
        """The first load: errors propagate (a worker does not start on bad rules)."""
        self._stamp = self._fingerprint()
        return load_rules(self.path)

    def changed(self) -> bool:
        return self._fingerprint() != self._stamp

    def reload(self) -> Reload:
        self._stamp = self._fingerprint()
        try:
            return Reload(load_rules(self.path))
        except (RulesError, ZoneError, OSError, ValueError) as exc:
            return Reload(None, str(exc))

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        root = self.path.parent
        files = [self.path, *sorted(p for p in root.rglob("*.geojson") if p.is_file())]
        out = []
        for p in files:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

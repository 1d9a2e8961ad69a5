"""Render the dashboards to JSON (the committed files) and write a Grafana provisioning tree."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from dashboards.definitions import all_dashboards, xyz_basemap
from dashboards.spec import Json
from fleetwatch.settings import Settings

PACKAGE_DIR = Path(__file__).parent
JSON_DIR = PACKAGE_DIR / "json"
PROVISIONING_DIR = PACKAGE_DIR / "provisioning"
REGIONS_FILE = PACKAGE_DIR / "maps" / "fleetwatch-regions.geojson"


def to_text(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def render(tile_url: str = "", attribution: str = "") -> dict[str, str]:
    """File name -> JSON text; without a tile URL, the committed offline form."""
    basemap = xyz_basemap(tile_url, attribution) if tile_url else None
    return {name: to_text(board) for name, board in all_dashboards(basemap).items()}


def write_json(directory: Path = JSON_DIR, tile_url: str = "", attribution: str = "") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(tile_url, attribution).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Committed dashboard files that differ from what the Python definitions render (or are missing)."""
    wanted = render()
    present = {p.name for p in directory.glob("*.json")}
    stale = [
        n
        for n, text in wanted.items()
        if not (directory / n).is_file() or (directory / n).read_text(encoding="utf-8") != text
    ]
    return sorted(stale + [n for n in present - set(wanted)])


def load_committed(directory: Path = JSON_DIR) -> dict[str, Json]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


@dataclass(frozen=True, slots=True)
class ProvisionedTree:
    root: Path
    datasource: Path
    provider: Path
    dashboards: list[Path]
    regions: Path


def provision(out: Path, settings: Settings, regions: Path = REGIONS_FILE) -> ProvisionedTree:
    """A directory to point Grafana at: ``provisioning/`` (paths= setting), ``dashboards/``, ``maps/``.

    Host, port, database and user are filled in from the settings; the password stays
    ``${FLEETWATCH_PG_DASHBOARDS_PASSWORD}`` for Grafana to read from its environment.
    """
    dash_dir = out / "dashboards"
    written = write_json(dash_dir, settings.dashboards_tile_url, settings.dashboards_tile_attribution)
    values = {
        "${FLEETWATCH_PG_HOST}": settings.pg_host,
        "${FLEETWATCH_PG_PORT}": str(settings.pg_port),
        "${FLEETWATCH_PG_DASHBOARDS_USER}": settings.pg_dashboards_user,
        "${FLEETWATCH_PG_DATABASE}": settings.pg_database,
        "${FLEETWATCH_DASHBOARDS_JSON_DIR}": str(dash_dir.resolve()),
    }
    targets = {}
    for kind in ("datasources", "dashboards"):
        text = (PROVISIONING_DIR / kind / "fleetwatch.yaml").read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        target = out / "provisioning" / kind / "fleetwatch.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        targets[kind] = target
    maps = out / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    regions_copy = maps / REGIONS_FILE.name
    shutil.copyfile(regions, regions_copy)
    return ProvisionedTree(out, targets["datasources"], targets["dashboards"], written, regions_copy)

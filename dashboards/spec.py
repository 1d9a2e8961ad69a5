"""The few Grafana JSON shapes our dashboards use, built from Python, plus what each panel needs.

Every panel carries a *shape*: the columns (and their kinds) its panel type needs from its query.
The shape is written into the panel JSON (``fleetwatch`` key, ignored by Grafana) so the checker
reads the committed JSON alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The provisioned datasource every panel uses (dashboards/provisioning/datasources/).
DATASOURCE_UID = "fleetwatch-pg"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}

#: Column kinds a shape can ask for (see check.py for the PostgreSQL types behind each).
KINDS = ("time", "number", "text", "bool", "any")

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    sql: str
    ref_id: str = "A"
    #: "table" or "time_series" (Grafana's SQL result formats).
    format: str = "table"
    #: Required columns: name -> kind. Time-series queries always need ``time``.
    needs: dict[str, str] = field(default_factory=dict)
    #: Whether the demo data must make this query return rows (checked by the integration test).
    expect_rows: bool = True

    def target(self) -> Json:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql.strip(),
        }


def shape(queries: list[Query]) -> Json:
    return {q.ref_id: {"format": q.format, "needs": q.needs, "expect_rows": q.expect_rows} for q in queries}


def panel(
    panel_type: str,
    title: str,
    queries: list[Query],
    grid: tuple[int, int, int, int],
    *,
    description: str = "",
    options: Json | None = None,
    field_config: Json | None = None,
    interval: str | None = None,
) -> Json:
    x, y, w, h = grid
    body: Json = {
        "type": panel_type,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [q.target() for q in queries],
        "options": options or {},
        "fieldConfig": field_config or {"defaults": {}, "overrides": []},
        "fleetwatch": {"shape": shape(queries)},
    }
    if interval:
        body["interval"] = interval
    return body


def query_variable(
    name: str, label: str, sql: str, *, multi: bool = True, include_all: bool = True, expect_rows: bool = True
) -> Json:
    """A query variable (``__value`` / ``__text`` columns, or the first column as both)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": sql.strip(),
        "definition": sql.strip(),
        "refresh": 1,  # on dashboard load: a new unit appears without editing the dashboard
        "multi": multi,
        "includeAll": include_all,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "options": [],
        "sort": 1,
        "fleetwatch": {"expect_rows": expect_rows},
    }


def custom_variable(name: str, label: str, values: list[str], *, multi: bool = True) -> Json:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "multi": multi,
        "includeAll": multi,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}
        if multi
        else {"selected": True, "text": values[0], "value": values[0]},
        "options": [{"selected": False, "text": v, "value": v} for v in values],
    }


def textbox_variable(name: str, label: str, default: str = "") -> Json:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"selected": False, "text": default, "value": default},
        "options": [],
    }


def annotation(name: str, query: Query, colour: str) -> Json:
    return {
        "name": name,
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": colour,
        "target": query.target(),
        "fleetwatch": {"shape": shape([query])},
    }


def dashboard(
    uid: str,
    title: str,
    panels: list[Json],
    variables: list[Json],
    *,
    time_from: str,
    refresh: str = "",
    annotations: list[Json] | None = None,
    links: list[Json] | None = None,
    description: str = "",
) -> Json:
    for number, p in enumerate(panels, start=1):
        p["id"] = number
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["fleetwatch"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [builtin, *(annotations or [])]},
        "links": links or [],
        "panels": panels,
    }


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def value_colours(mapping: dict[str, str]) -> list[Json]:
    """A value mapping colouring each text value (status, severity)."""
    return [
        {
            "type": "value",
            "options": {v: {"color": c, "index": i, "text": v} for i, (v, c) in enumerate(mapping.items())},
        }
    ]

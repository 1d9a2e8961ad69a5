"""Checks on the dashboards: static (uids, datasources, variables, SDK decoding) and live (every
panel query, interpolated as Grafana would, run against the database as a given login)."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml

from dashboards.build import PROVISIONING_DIR
from dashboards.macros import MacroError, QueryContext, VariableValue, interpolate, variables_used
from dashboards.spec import Json

#: PostgreSQL type names behind each column kind a panel shape asks for.
KIND_TYPES = {
    "time": {"timestamptz", "timestamp", "date"},
    "number": {"int2", "int4", "int8", "float4", "float8", "numeric", "oid"},
    "text": {"text", "varchar", "bpchar", "name"},
    "bool": {"bool"},
}
#: Grafana's built-in Geomap layer types (base layers and data layers).
GEOMAP_LAYER_TYPES = {
    "xyz",
    "carto",
    "esri-xyz",
    "osm-standard",
    "geojson",
    "markers",
    "heatmap",
    "route",
    "lastPointTracker",
    "photos",
    "network",
    "dayNight",
}
_LINK_VAR_RE = re.compile(r"var-(\w+)=")
_LINK_UID_RE = re.compile(r"^/d/([\w-]+)/")


# --- static checks --------------------------------------------------------------------------------


def provisioned_datasource_uids(directory: Path = PROVISIONING_DIR / "datasources") -> set[str]:
    uids = set()
    for path in directory.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        uids |= {str(ds["uid"]) for ds in doc.get("datasources", [])}
    return uids


def _datasource_refs(board: Json) -> Iterator[tuple[str, Any]]:
    for p in board.get("panels", []):
        yield f"panel {p.get('title')!r}", p.get("datasource")
        for t in p.get("targets", []):
            yield f"panel {p.get('title')!r} target {t.get('refId')}", t.get("datasource")
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            yield f"variable {v.get('name')!r}", v.get("datasource")
    for a in board.get("annotations", {}).get("list", []):
        if not a.get("builtIn"):
            yield f"annotation {a.get('name')!r}", a.get("datasource")


def sql_texts(board: Json) -> Iterator[tuple[str, str]]:
    """(where, SQL) of every query in a dashboard: variables, panel targets, annotations."""
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            yield f"variable {v['name']!r}", str(v.get("query", ""))
    for p in board.get("panels", []):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} {t['refId']}", str(t.get("rawSql", ""))
    for a in board.get("annotations", {}).get("list", []):
        if "target" in a:
            yield f"annotation {a['name']!r}", str(a["target"].get("rawSql", ""))


def static_problems(boards: Mapping[str, Json], datasource_uids: set[str] | None = None) -> list[str]:
    """Everything wrong with a set of dashboards that needs no database (empty list: all good)."""
    from grafana_foundation_sdk.cog import runtime
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

    register_default_plugins()
    uids = datasource_uids if datasource_uids is not None else provisioned_datasource_uids()
    problems: list[str] = []
    seen: dict[str, str] = {}
    variables_of = {
        b.get("uid"): {v["name"] for v in b.get("templating", {}).get("list", [])} for b in boards.values()
    }
    for name, board in boards.items():
        uid = board.get("uid")
        if not uid or uid in seen:
            problems.append(f"{name}: uid {uid!r} missing or also used by {seen.get(str(uid))}")
        seen[str(uid)] = name
        ids = [p.get("id") for p in board.get("panels", [])]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: panel ids repeat: {ids}")
        for where, ref in _datasource_refs(board):
            if not isinstance(ref, dict) or ref.get("uid") not in uids:
                problems.append(
                    f"{name}: {where}: datasource {ref!r} is not a provisioned datasource {sorted(uids)}"
                )
        defined: list[str] = []
        for var in board.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                missing = variables_used(str(var.get("query", ""))) - set(defined)
                if missing:
                    problems.append(
                        f"{name}: variable {var['name']!r} uses {sorted(missing)} before they are defined"
                    )
            defined.append(var["name"])
        for where, sql in sql_texts(board):
            missing = variables_used(sql) - set(defined)
            if missing:
                problems.append(f"{name}: {where} uses undefined variable(s) {sorted(missing)}")
        for p in board.get("panels", []):
            refs = [t.get("refId") for t in p.get("targets", [])]
            if len(refs) != len(set(refs)) or set(refs) != set(p.get("fleetwatch", {}).get("shape", {})):
                problems.append(
                    f"{name}: panel {p.get('title')!r}: refIds {refs} repeat or do not match its shapes"
                )
            if runtime.panelcfg_config(p.get("type", "")) is None:
                problems.append(
                    f"{name}: panel {p.get('title')!r}: type {p.get('type')!r} is not a core panel"
                )
            for ref_id, s in p.get("fleetwatch", {}).get("shape", {}).items():
                if s["format"] == "time_series" and s["needs"].get("time") != "time":
                    problems.append(
                        f"{name}: panel {p['title']!r} {ref_id}: a time series needs a time column"
                    )
            problems += _link_problems(name, p, boards, variables_of)
        try:
            decoded = Dashboard.from_json(board)
        except Exception as exc:  # the SDK's decoders raise whatever the bad field triggers
            problems.append(f"{name}: grafana-foundation-sdk cannot decode it: {exc!r}")
            continue
        problems += _decoded_problems(name, board, decoded, Panel)
    return problems


def _link_problems(
    name: str, panel: Json, boards: Mapping[str, Json], variables_of: dict[Any, set[str]]
) -> list[str]:
    problems = []
    links = [*panel.get("links", []), *panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
    columns: set[str] = set()
    for s in panel.get("fleetwatch", {}).get("shape", {}).values():
        columns |= set(s["needs"])
    for link in links:
        url = str(link.get("url", ""))
        target = _LINK_UID_RE.match(url)
        if target is None:
            continue
        uid = target.group(1)
        if uid not in variables_of:
            problems.append(f"{name}: panel {panel['title']!r}: link to unknown dashboard uid {uid!r}")
            continue
        for var in _LINK_VAR_RE.findall(url):
            if var not in variables_of[uid]:
                problems.append(
                    f"{name}: panel {panel['title']!r}: link sets var-{var}, not a variable of {uid}"
                )
        for fld in re.findall(r"__data\.fields\.(\w+)", url):
            if fld not in columns:
                problems.append(
                    f"{name}: panel {panel['title']!r}: link uses field {fld!r} its query's shape lacks"
                )
    return problems


def _decoded_problems(name: str, board: Json, decoded: Any, panel_cls: Any) -> list[str]:
    """The SDK's model must hold what the JSON says (nothing dropped by a misspelt key)."""
    problems = []
    if decoded.uid != board["uid"] or decoded.title != board["title"]:
        problems.append(f"{name}: decoded uid/title differ")
    panels: list[Any] = [p for p in decoded.panels if isinstance(p, panel_cls)]
    if len(panels) != len(board["panels"]):
        problems.append(f"{name}: {len(board['panels'])} panels, the SDK decoded {len(panels)}")
    for raw, model in zip(board["panels"], panels, strict=False):
        if model.type_val != raw["type"] or len(model.targets or []) != len(raw["targets"]):
            problems.append(
                f"{name}: panel {raw['title']!r} decoded as {model.type_val} with "
                f"{len(model.targets or [])} targets"
            )
        if raw["type"] == "geomap":
            layers = [
                *(getattr(model.options, "layers", None) or []),
                getattr(model.options, "basemap", None),
            ]
            types = [getattr(layer, "type_val", None) for layer in layers]
            if len(layers) != len(raw["options"]["layers"]) + 1 or not set(types) <= GEOMAP_LAYER_TYPES:
                problems.append(
                    f"{name}: panel {raw['title']!r}: geomap layers did not decode to known "
                    f"layer types: {types}"
                )
    # And back out through the SDK's encoder: the same panels, titles and queries.
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    again = json.loads(JSONEncoder().encode(decoded))
    summary = [
        (p.get("type"), p.get("title"), [t.get("rawSql") for t in p.get("targets", [])])
        for p in again["panels"]
    ]
    if summary != [(p["type"], p["title"], [t["rawSql"] for t in p["targets"]]) for p in board["panels"]]:
        problems.append(f"{name}: re-encoded by the SDK, its panels or queries differ")
    names = [v.name for v in decoded.templating.list_val or []]
    if names != [v["name"] for v in board["templating"]["list"]]:
        problems.append(f"{name}: variables decoded as {names}")
    return problems


# --- live checks ----------------------------------------------------------------------------------


@dataclass
class QueryResult:
    dashboard: str
    where: str
    sql: str
    columns: list[tuple[str, str]]
    rows: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    values: list[tuple[Any, ...]] = field(default_factory=list)


def _kinds_ok(kind: str, type_name: str) -> bool:
    return kind == "any" or type_name in KIND_TYPES[kind]


def _execute(
    conn: psycopg.Connection[Any], sql: str, keep_rows: int
) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]], int, float]:
    started = time.perf_counter()
    cur = conn.execute(sql)
    rows = cur.fetchall()
    seconds = time.perf_counter() - started
    types = conn.adapters.types
    columns = []
    for col in cur.description or []:
        info = types.get(col.type_code)
        columns.append((col.name, info.name if info else str(col.type_code)))
    return columns, rows[:keep_rows], len(rows), seconds


def resolve_variables(
    conn: psycopg.Connection[Any],
    board: Json,
    time_from: datetime,
    time_to: datetime,
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> tuple[dict[str, VariableValue], list[QueryResult]]:
    """Each variable's value as Grafana would set it on load: query variables run (as this login)
    in order, "All" = every option; ``overrides`` picks values like a user would."""
    overrides = overrides or {}
    values: dict[str, VariableValue] = {}
    results = []
    for var in board["templating"]["list"]:
        name, kind = var["name"], var["type"]
        quoted = bool(var.get("multi") or var.get("includeAll"))
        if kind == "query":
            ctx = QueryContext(time_from, time_to, values)
            sql = interpolate(var["query"], ctx)
            columns, rows, count, seconds = _execute(conn, sql, keep_rows=1_000_000)
            names = [c for c, _ in columns]
            index = names.index("__value") if "__value" in names else 0
            options = [str(r[index]) for r in rows]
            result = QueryResult(board["uid"], f"variable {name}", sql, columns, count, seconds)
            if var.get("fleetwatch", {}).get("expect_rows") and not options:
                result.problems.append(f"variable {name}: its query returned no options")
            results.append(result)
        elif kind == "custom":
            options = [o.strip() for o in str(var["query"]).split(",")]
        else:  # textbox / constant
            options = [str(var.get("query", ""))]
        chosen = list(overrides.get(name, options if quoted else options[:1]))
        values[name] = VariableValue(tuple(chosen), quoted)
    return values, results


def check_shape(
    shape: Json, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]], count: int
) -> list[str]:
    problems = []
    types = dict(columns)
    for column, kind in shape["needs"].items():
        if column not in types:
            problems.append(f"needs column {column!r} ({kind}); got {[c for c, _ in columns]}")
        elif not _kinds_ok(kind, types[column]):
            problems.append(f"column {column!r} is {types[column]}, the panel needs {kind}")
    if shape["format"] == "time_series":
        if not any(t in KIND_TYPES["number"] for c, t in columns if c not in ("time", "metric")):
            problems.append("a time series needs at least one numeric value column")
        if "time" in types:
            index = [c for c, _ in columns].index("time")
            stamps = [r[index] for r in rows]
            if any(a > b for a, b in itertools.pairwise(stamps)):
                problems.append("time series rows are not sorted by time")
    if shape.get("expect_rows") and count == 0:
        problems.append("returned no rows where the data should produce some")
    return problems


def run_dashboard(
    conn: psycopg.Connection[Any],
    board: Json,
    time_from: datetime,
    time_to: datetime,
    overrides: Mapping[str, Sequence[str]] | None = None,
    *,
    keep_rows: int = 5,
) -> list[QueryResult]:
    """Run every variable, panel target and annotation query as this connection's login."""
    variables, results = resolve_variables(conn, board, time_from, time_to, overrides)
    jobs: list[tuple[str, Json, str, int, str | None]] = []
    for p in board["panels"]:
        for t in p["targets"]:
            jobs.append(
                (
                    f"{p['title']} [{p['type']} {t['refId']}]",
                    p["fleetwatch"]["shape"][t["refId"]],
                    t["rawSql"],
                    int(p.get("maxDataPoints", 1000)),
                    p.get("interval"),
                )
            )
    for a in board["annotations"]["list"]:
        if "target" in a:
            jobs.append(
                (
                    f"annotation {a['name']}",
                    a["fleetwatch"]["shape"][a["target"]["refId"]],
                    a["target"]["rawSql"],
                    1000,
                    None,
                )
            )
    for where, shape, raw_sql, points, min_interval in jobs:
        # The datasource's timeInterval (10 s: the fix interval) is every panel's floor.
        ctx = QueryContext(time_from, time_to, variables, points, min_interval or "10s")
        try:
            sql = interpolate(raw_sql, ctx)
        except MacroError as exc:
            results.append(QueryResult(board["uid"], where, raw_sql, [], 0, 0.0, [str(exc)]))
            continue
        columns, rows, count, seconds = _execute(
            conn, sql, keep_rows if shape["format"] != "time_series" else 10**9
        )
        result = QueryResult(board["uid"], where, sql, columns, count, seconds, values=rows[:keep_rows])
        result.problems = check_shape(shape, columns, rows, count)
        results.append(result)
    return results


def connect_as(settings: Any, user: str, password: str) -> psycopg.Connection[Any]:
    """A connection as any login (Grafana's datasource holds one per datasource)."""
    conn = psycopg.connect(
        settings.pg_conninfo_for(user),
        password=password,
        autocommit=True,
        application_name="fleetwatch-dashboards-check",
    )
    conn.execute("SET statement_timeout = '30s'")
    return conn

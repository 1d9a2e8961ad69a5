"""Seeded fuzzing of every parser of outside input: the targets, their input strategies (valid
inputs, structured mutations of them, byte-level mutations, raw bytes) and a runner that counts
outcomes and crashes. Used by the fast `tests/<package>/test_fuzz_*.py` and `bench/bench_fuzz.py`.

A target returns the outcome's label (``accepted`` or ``rejected:<code>``) and lets through only
an exception that is not the parser's own error: that is a crash. A case that runs longer than
`HANG_SECONDS` is interrupted and counted as a hang (a crash too).
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from fleetwatch.records import ContractError, DeviceRegistration, Rejection, parse_fix, parse_order
from geofence import RulesError, load_rules
from geofence.index import ZoneIndex
from geofence.zones import ZoneError, load_zone_file
from ingest.jt808 import messages as m
from ingest.jt808.codec import MAX_BODY, FrameError, FrameSplitter, Header, decode_frame, encode_frame
from ingest.jt808.mapping import location_to_fix
from ingest.jt808.reassembly import Reassembler
from ingest.registry import RegistryTable
from ingest.validate import check_fix
from streams.core import OrderBook

HANG_SECONDS = 10.0
#: The receiver's clock for every case (fixed, so a run is reproducible from its seed).
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DEVICE, VEHICLE = "dev-fuzz-1", "苏A0F001"
TOPIC_PREFIX = "fleetwatch/v1/telemetry"


class Hang(Exception):
    """A case ran past `HANG_SECONDS`."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------------
# generic strategies
# --------------------------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "0", "-1", "1e400", "NaN", "null", "2026-13-45T25:61:00Z", "08:00", "苏A"])
)
#: Anything JSON (and YAML) can carry, including NaN, infinities and integers beyond 64 bits.
ANY_VALUE: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def byte_mutations(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """1-4 edits of a valid input's bytes: flip, delete, insert, repeat a stretch, truncate."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "delete", "insert", "repeat", "truncate")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
        else:
            del data[at:]
    return bytes(data)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


@st.composite
def tree_mutations(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """1-3 edits of a valid document's tree: replace a node with any value, delete it, add a key,
    wrap it in a list, turn a number into a string."""
    doc = json.loads(json.dumps(draw(base), default=str))  # a private deep copy
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(("replace", "delete", "add", "wrap", "stringify")))
        if not path:
            if op == "replace":
                doc = draw(ANY_VALUE)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        node = parent[last]
        if op == "replace":
            parent[last] = draw(ANY_VALUE)
        elif op == "delete":
            del parent[last]
        elif op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=12))] = draw(ANY_VALUE)
        elif op == "wrap":
            parent[last] = [node]
        elif op == "stringify":
            parent[last] = str(node)
    return doc


def json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, allow_nan=True).encode()


def yaml_bytes(doc: Any) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()


#: Inputs known to break naive parsers: deep nesting, alias bombs, huge numbers, odd encodings.
ADVERSARIAL: tuple[bytes, ...] = (
    b"[" * 3000,  # past the recursion limit of json and of PyYAML's composer, yet quick to scan
    b'{"a":' * 3000,
    b"- " * 3000 + b"x",
    b"{" * 3000 + b"}" * 3000,
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    b"1e999",
    b"-1e999",
    b"NaN",
    b"9" * 5000,
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b"\x00" * 100,
    b'{"type": "FeatureCollection", "datum": "WGS-84", "features": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
)


def inputs(
    valid: st.SearchStrategy[Any], encode: Callable[[Any], bytes], max_raw: int = 600
) -> st.SearchStrategy[bytes]:
    """The mix every byte-fed target gets: valid, tree-mutated, byte-mutated, raw bytes, raw text,
    the adversarial classics."""
    as_bytes = valid.map(encode)
    return st.one_of(
        as_bytes,
        tree_mutations(valid).map(encode),
        byte_mutations(as_bytes),
        st.binary(max_size=max_raw),
        st.text(max_size=max_raw).map(str.encode),
        st.sampled_from(ADVERSARIAL),
    )


# --------------------------------------------------------------------------------------------
# valid inputs
# --------------------------------------------------------------------------------------------

_LAT = st.floats(min_value=31.0, max_value=32.6)
_LON = st.floats(min_value=118.3, max_value=119.6)
_WHEN = st.integers(0, 86400 * 20).map(lambda s: NOW - timedelta(seconds=s))


@st.composite
def valid_fixes(draw: st.DrawFn) -> dict[str, Any]:
    fix: dict[str, Any] = {
        "v": 1,
        "device_id": DEVICE,
        "vehicle_id": VEHICLE,
        "ts": draw(_WHEN).isoformat(),
        "lat": draw(_LAT),
        "lon": draw(_LON),
        "speed_kmh": draw(st.floats(0, 180)),
        "heading": draw(st.integers(0, 359)),
        "acc": draw(st.booleans()),
        "seq": draw(st.integers(0, 2**40)),
    }
    for key, value in (
        ("odometer_km", st.floats(0, 1e6)),
        ("alt_m", st.integers(-400, 8000)),
        ("sats", st.integers(0, 40)),
        ("alarm", st.integers(0, 2**32 - 1)),
        ("fix_valid", st.booleans()),
    ):
        if draw(st.booleans()):
            fix[key] = draw(value)
    return fix


def _square(lat: float, lon: float, size: float) -> list[list[list[float]]]:
    return [[[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]]


@st.composite
def valid_orders(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(_WHEN)
    order: dict[str, Any] = {
        "v": 1,
        "order_id": f"o-{draw(st.integers(0, 10**6))}",
        "vehicle_id": VEHICLE,
        "org": "js.nj.u01",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=draw(st.integers(1, 2000)))).isoformat(),
        "purpose": draw(st.text(max_size=20)),
        "destination": draw(st.text(max_size=20)),
        "status": draw(st.sampled_from(["approved", "cancelled"])),
    }
    if draw(st.booleans()):
        order["destination_area"] = {
            "type": "Polygon",
            "coordinates": _square(draw(_LAT), draw(_LON), draw(st.floats(0.001, 0.5))),
        }
    return order


_KINDS = {"region": None, "depot": None, "route": None, "sensitive": "golf"}


@st.composite
def valid_zone_collections(draw: st.DrawFn) -> dict[str, Any]:
    features = []
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(sorted(_KINDS)))
        lat, lon = draw(_LAT), draw(_LON)
        props: dict[str, Any] = {"id": f"z{index}", "kind": kind, "name": draw(st.text(max_size=10))}
        if kind == "sensitive":
            props["category"] = draw(st.sampled_from(["golf", "ktv", "scenic", "resort", "restaurant"]))
        shape = draw(st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString"]))
        size = draw(st.floats(0.001, 0.2))
        if shape == "Polygon":
            geometry: dict[str, Any] = {"type": shape, "coordinates": _square(lat, lon, size)}
        elif shape == "MultiPolygon":
            geometry = {
                "type": shape,
                "coordinates": [_square(lat, lon, size), _square(lat + 1, lon + 1, size)],
            }
        elif shape == "Point":
            geometry = {"type": shape, "coordinates": [lon, lat]}
            props["radius_m"] = draw(st.floats(1, 5000))
        else:
            geometry = {"type": shape, "coordinates": [[lon, lat], [lon + size, lat + size]]}
            props["buffer_m"] = draw(st.floats(1, 500))
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    datum = draw(st.sampled_from(["WGS-84", "GCJ-02"]))
    return {"type": "FeatureCollection", "datum": datum, "features": features}


#: The zone files every rules.yaml case can name (written once per target, tiny so a load is fast).
_RULES_ZONES = {
    "zones/region.geojson": {
        "type": "FeatureCollection",
        "datum": "WGS-84",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": "region-nj", "kind": "region"},
                "geometry": {"type": "Polygon", "coordinates": _square(31.5, 118.5, 0.8)},
            }
        ],
    },
    "zones/depots.geojson": {
        "type": "FeatureCollection",
        "datum": "GCJ-02",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": "depot-1", "kind": "depot", "radius_m": 150},
                "geometry": {"type": "Point", "coordinates": [118.78, 32.04]},
            },
            {
                "type": "Feature",
                "properties": {"id": "golf-1", "kind": "sensitive", "category": "golf"},
                "geometry": {"type": "Polygon", "coordinates": _square(32.06, 118.8, 0.01)},
            },
        ],
    },
}
_TIME = st.sampled_from(["07:30", "08:00", "09:00", "17:30", "18:00", "02:00"])


@st.composite
def valid_rules(draw: st.DrawFn) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "office_hours": {
            "start": draw(st.sampled_from(["07:30", "08:00"])),
            "end": draw(st.sampled_from(["17:30", "18:00"])),
        },
        "permitted_region": "region-nj",
    }
    for key, value in (
        ("stop_seconds", st.integers(60, 900)),
        ("dwell_min_seconds", st.floats(60, 3600)),
        ("out_of_area_min_fixes", st.integers(1, 5)),
        ("depot_check_time", _TIME),
        ("orders_required", st.booleans()),
        ("overspeed_kmh", st.floats(60, 160)),
        ("sensitive_categories", st.just(["golf", "ktv"])),
        ("severity_red", st.just({"private_destination": 900})),
    ):
        if draw(st.booleans()):
            settings[key] = draw(value)
    doc: dict[str, Any] = {
        "version": 1,
        "timezone": draw(st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "UTC"])),
        "zone_files": list(_RULES_ZONES),
        "orgs": [
            {"id": "js", "name": "江苏省", "settings": settings},
            {"id": "js.nj", "name": "南京市", "parent": "js"},
        ],
        "vehicles": [{"vehicle_id": VEHICLE, "device_id": DEVICE, "org": "js.nj", "depot": "depot-1"}],
    }
    if draw(st.booleans()):
        doc["calendar"] = {"years": {2027: {"holidays": ["2027-01-01"], "workdays": ["2027-01-04"]}}}
    return doc


@st.composite
def valid_locations(draw: st.DrawFn) -> m.Location:
    return m.Location(
        alarm=draw(st.integers(0, 2**32 - 1)),
        status=draw(st.integers(0, 0xFFFF) | st.just(3)),
        lat=round(draw(_LAT), 6),
        lon=round(draw(_LON), 6),
        alt_m=draw(st.integers(-300, 5000)),
        speed_kmh=draw(st.integers(0, 1500)) / 10,
        heading=draw(st.integers(0, 359)),
        time=draw(_WHEN).astimezone(m.BEIJING).replace(microsecond=0),
        mileage_km=draw(st.none() | st.integers(0, 10**7).map(lambda x: x / 10)),
        sats=draw(st.none() | st.integers(0, 40)),
        extra=draw(st.dictionaries(st.integers(0x04, 0x2F), st.binary(max_size=6), max_size=2)),
    )


PHONE = "13912345678"


@st.composite
def jt808_bodies(draw: st.DrawFn) -> tuple[int, bytes]:
    """(message id, body) of what terminals send."""
    kind = draw(st.sampled_from((m.LOCATION, m.BATCH_LOCATION, m.REGISTER, m.AUTHENTICATE, m.HEARTBEAT)))
    if kind == m.LOCATION:
        return kind, m.encode_location(draw(valid_locations()))
    if kind == m.BATCH_LOCATION:
        locs = draw(st.lists(valid_locations(), min_size=1, max_size=4))
        return kind, m.encode_batch(locs, blind_area=draw(st.booleans()))
    if kind == m.REGISTER:
        reg = m.Registration(32, 100, "FW", "M1", "T0001", draw(st.integers(0, 4)), VEHICLE)
        return kind, m.encode_registration(reg, version=None)
    if kind == m.AUTHENTICATE:
        return kind, m.encode_authentication(m.Authentication("code-1", "8612345", "1.0"), version=None)
    return kind, b""


@st.composite
def jt808_streams(draw: st.DrawFn, mutate_body: bool = False) -> bytes:
    """1-3 frames as a terminal sends them (2013 or 2019 edition, sometimes split into sub-packages);
    with ``mutate_body`` a body is edited *before* framing, so it passes the check code and reaches
    the message decoders."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 3))):
        msg_id, body = draw(jt808_bodies())
        if mutate_body:
            body = draw(byte_mutations(st.just(body)))
        version = draw(st.none() | st.just(1))
        flow = draw(st.integers(0, 0xFFFF))
        parts = draw(st.integers(1, 3)) if len(body) > 2 else 1
        size = -(-len(body) // parts) if parts > 1 else len(body)
        for index in range(parts):
            chunk = body[index * size : (index + 1) * size] if parts > 1 else body
            header = Header(
                msg_id,
                PHONE,
                (flow + index) & 0xFFFF,
                version=version,
                package_total=parts if parts > 1 else 0,
                package_index=index + 1 if parts > 1 else 0,
            )
            out += encode_frame(header, chunk[:MAX_BODY])
    return bytes(out)


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One parser: its inputs and a runner that returns the outcome label (raises only on a crash)."""

    name: str
    what: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], str]


def _contract(exc: ContractError) -> str:
    assert exc.code and str(exc), "a rejection must name its reason"
    return f"rejected:{exc.code}"


def fix_target(workdir: Path) -> Target:
    registry = RegistryTable()
    registry.apply(DEVICE.encode(), DeviceRegistration(DEVICE, VEHICLE, "js.nj", datetime.now(UTC)).to_json())
    topic = f"{TOPIC_PREFIX}/{DEVICE}"
    # Mostly the sender's own topic, so the payload decides; sometimes another device's or junk.
    topics = st.one_of(st.just(topic), st.just(topic), st.just(f"{TOPIC_PREFIX}/other"), st.text(max_size=40))
    strategy = st.tuples(topics, inputs(valid_fixes(), json_bytes))

    def run(case: tuple[str, bytes]) -> str:
        result = check_fix(
            case[1],
            case[0],
            registry=registry,
            topic_prefix=TOPIC_PREFIX,
            now=NOW,
            max_future=timedelta(minutes=5),
            max_speed_kmh=250.0,
            max_payload_bytes=4096,
        )
        if isinstance(result, Rejection):
            assert result.code and result.message, "a rejection must name its code and say why"
            return f"rejected:{result.code}"
        parse_fix(result.to_json(), now=NOW, max_future=timedelta(minutes=5))  # what the worker reads back
        return "accepted"

    return Target("fix payload", "ingest/validate.check_fix (MQTT fix v1 + topic identity)", strategy, run)


def order_target(workdir: Path) -> Target:
    def run(line: bytes) -> str:
        try:
            order = parse_order(line)
        except ContractError as exc:
            return _contract(exc)
        # An accepted order must be usable downstream: the worker's order book and a place test.
        book = OrderBook.of([order])
        book.place_exemption(order.vehicle_id, order.start, order.end, [(32.0, 118.8)])
        assert parse_order(order.to_json()) == order, "an accepted order must survive its own round trip"
        return "accepted"

    return Target(
        "dispatch order",
        "fleetwatch.records.parse_order (`orders add`) + OrderBook",
        inputs(valid_orders(), json_bytes),
        run,
    )


def rules_target(workdir: Path) -> Target:
    for name, doc in _RULES_ZONES.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(json_bytes(doc))
    path = workdir / "rules.yaml"

    def run(text: bytes) -> str:
        path.write_bytes(text)
        try:
            load_rules(path)
        except (RulesError, ZoneError) as exc:
            assert str(exc), "a rules error must say why"
            return f"rejected:{type(exc).__name__}"
        return "accepted"

    return Target(
        "rules.yaml", "geofence.load_rules (with its zone files)", inputs(valid_rules(), yaml_bytes), run
    )


def zones_target(workdir: Path) -> Target:
    path = workdir / "zones.geojson"

    def run(text: bytes) -> str:
        path.write_bytes(text)
        try:
            zones = load_zone_file(path)
        except ZoneError as exc:
            assert exc.reason, "a zone error must say why"
            return "rejected:ZoneError"
        index = ZoneIndex(zones)  # what the rules loader builds from them
        for zone in zones:
            zone.contains(32.0, 118.8)
            zone.distance_m(32.0, 118.8)
        index.containing(32.0, 118.8)
        return "accepted"

    return Target(
        "GeoJSON zones",
        "geofence.zones.load_zone_file + ZoneIndex",
        inputs(valid_zone_collections(), json_bytes),
        run,
    )


def jt808_target(workdir: Path) -> Target:
    """The gateway's decoding path for a byte stream: split, decode, reassemble, decode the body,
    map to fix v1 (what `ingest/jt808/server.py` does per frame, without sockets and Kafka)."""
    strategy = st.one_of(
        jt808_streams(),
        jt808_streams(mutate_body=True),
        byte_mutations(jt808_streams()),
        st.binary(max_size=1200),
        st.binary(max_size=64).map(lambda b: b"\x7e" + b + b"\x7e"),
    )

    def run(stream: bytes) -> str:
        splitter = FrameSplitter()
        reassembler = Reassembler()
        outcomes: list[str] = []
        frames, overflow = splitter.feed(stream)
        if overflow is not None:
            outcomes.append("rejected:oversized_frame")
        for content in frames:
            try:
                outcomes.append(_jt808_frame(content, reassembler))
            except FrameError as exc:
                assert exc.code and exc.reason, "a frame error must name its code and reason"
                outcomes.append(f"rejected:{exc.code}")
            except ContractError as exc:
                outcomes.append(_contract(exc))
        reassembler.expire(float("inf"))
        return outcomes[0] if outcomes else "no frame"

    return Target(
        "JT/T 808 stream", "ingest/jt808 split + decode_frame + reassembly + bodies + mapping", strategy, run
    )


def _jt808_frame(content: bytes, reassembler: Reassembler) -> str:
    frame = decode_frame(content)
    header, body = frame.header, frame.body
    if header.subpackage:
        whole = reassembler.add(header, body, content, 0.0)
        if whole is None:
            return "part"
        body = whole
    if header.msg_id == m.REGISTER:
        m.decode_registration(body, version=header.version)
    elif header.msg_id == m.AUTHENTICATE:
        m.decode_authentication(body, version=header.version)
    elif header.msg_id in (m.LOCATION, m.BATCH_LOCATION):
        locations = (
            [m.decode_location(body)] if header.msg_id == m.LOCATION else m.decode_batch(body).locations
        )
        for loc in locations:
            location_to_fix(
                loc,
                device_id=header.phone,
                vehicle_id=VEHICLE,
                now=NOW,
                max_future=timedelta(minutes=5),
                max_speed_kmh=250.0,
            )
    return "accepted"


TARGETS: dict[str, Callable[[Path], Target]] = {
    "fix": fix_target,
    "order": order_target,
    "rules": rules_target,
    "zones": zones_target,
    "jt808": jt808_target,
}


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


@dataclass
class Crash:
    error: str
    case: str
    trace: str


@dataclass
class Report:
    target: str
    what: str = ""
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)
    slowest_s: float = 0.0


def classify(target: Target, case: Any, report: Report | None = None) -> Crash | None:
    """Run one case; a crash (unexpected exception or hang) is returned, never raised."""
    import time

    started = time.perf_counter()
    try:
        with time_limit(HANG_SECONDS):
            outcome = target.run(case)
    except Exception as exc:
        crash = Crash(f"{type(exc).__name__}: {exc}"[:300], repr(case)[:2000], traceback.format_exc(limit=-6))
        if report is not None:
            report.cases += 1
            report.crashes.append(crash)
        return crash
    if report is not None:
        report.cases += 1
        report.outcomes[outcome.split(":")[0] if outcome.startswith("rejected") else outcome] += 1
        report.slowest_s = max(report.slowest_s, time.perf_counter() - started)
    return None


#: Cases hypothesis generates per run; beyond them, cases are seeded byte mutations of these.
CORPUS_SIZE = 2000


def fuzz(
    name: str,
    cases: int,
    seed_value: int,
    *,
    progress: Callable[[Report], None] | None = None,
    progress_every: int = 5000,
) -> Report:
    """Run ``cases`` cases against one target, seeded (the same seed, the same cases).

    The first `CORPUS_SIZE` come from hypothesis (valid, tree-mutated, byte-mutated, raw, adversarial);
    generating each costs ~100x what parsing it does, so volume beyond them comes from mutating
    them: `derive` with ``random.Random(seed)``."""
    with tempfile.TemporaryDirectory(prefix=f"fw-fuzz-{name}-") as tmp:
        target = TARGETS[name](Path(tmp))
        report = Report(target.name, target.what)
        corpus: list[Any] = []

        def count(case: Any) -> None:
            classify(target, case, report)
            if progress is not None and report.cases % progress_every == 0:
                progress(report)

        @hsettings(
            max_examples=min(cases, CORPUS_SIZE),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @seed(seed_value)
        @given(target.strategy)
        def one(case: Any) -> None:
            corpus.append(case)
            count(case)

        one()
        rng = random.Random(seed_value)
        while report.cases < cases and corpus:
            count(derive(rng.choice(corpus), rng.choice(corpus), rng))
        return report


def derive(case: Any, other: Any, rng: random.Random) -> Any:
    """A byte-level mutation of a corpus case: 1-4 of flip, delete, insert, repeat, truncate, or a
    splice with another case (a fix case is (topic, payload): the payload is mutated)."""
    if isinstance(case, tuple):
        return (case[0], derive(case[1], other[1] if isinstance(other, tuple) else other, rng))
    data = bytearray(case)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randint(0, len(data))
        if op == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif op == 1:
            del data[at : at + rng.randint(1, 8)]
        elif op == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            data[at:at] = data[at : at + rng.randint(1, 32)] * rng.randint(1, 4)
        elif op == 4:
            del data[at:]
        else:
            donor = bytes(other)
            cut = rng.randint(0, len(donor))
            data[at:] = donor[cut:]
    return bytes(data)


def assert_no_crash(name: str, cases: int, seed_value: int) -> Report:
    """The CI check: ``cases`` cases, each a clear rejection or an accepted input, never a crash."""
    report = fuzz(name, cases, seed_value)
    assert report.cases >= cases * 0.9, f"only {report.cases} of {cases} cases ran"
    if report.crashes:
        first = report.crashes[0]
        raise AssertionError(
            f"{len(report.crashes)} crash(es) in {report.cases} {report.target} cases; first: {first.error}\n"
            f"case: {first.case}\n{first.trace}"
        )
    assert report.outcomes["rejected"] > 0 and report.outcomes["accepted"] > 0, report.outcomes
    return report

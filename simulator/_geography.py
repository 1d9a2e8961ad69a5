"""The simulated Nanjing-area geography: city outlines, a synthetic road graph, sensitive places.

Datum: everything here is WGS-84 (what terminals report). The two city outlines are a
hand-drawn simplification of the administrative outlines of Nanjing and Zhenjiang,
approximate to a few kilometres, traced by eye from public maps; they are NOT survey data and
share one border on purpose (the Nanjing/Zhenjiang line east of Tangshan). Sensitive places
are placed near real, well-known locations but their positions and sizes are approximate and
synthetic. The road graph is synthetic: a jittered grid inside each city plus a few
expressways, good enough to drive plausible tracks on.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import shapely.affinity
from shapely.geometry import Point, Polygon
from shapely.prepared import prep

#: metres per degree of latitude (mean, good to ~0.5 % at 32 N which is all we need).
M_PER_DEG_LAT = 110_574.0


def m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """Move a point by metres north/east (local tangent plane; fine for a few km)."""
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / m_per_deg_lon(lat)


def local_xy(lat0: float, lon0: float, lat: float, lon: float) -> tuple[float, float]:
    return (lon - lon0) * m_per_deg_lon(lat0), (lat - lat0) * M_PER_DEG_LAT


def distance_outside_m(region: Polygon, lat: float, lon: float) -> float:
    """Metres from a point to the region (0 inside), in a tangent plane centred on the point."""
    pt = Point(lon, lat)
    if region.covers(pt):
        return 0.0
    kx, ky = m_per_deg_lon(lat), M_PER_DEG_LAT
    local = shapely.affinity.scale(region, xfact=kx, yfact=ky, origin=(lon, lat))
    return float(local.distance(Point(lon, lat)))


# (lon, lat) rings, clockwise from the north. Hand-drawn simplification, approximate.
NANJING_OUTLINE: list[tuple[float, float]] = [
    (118.70, 32.55), (118.90, 32.62), (119.05, 32.48), (118.98, 32.30),
    (119.10, 32.20), (119.15, 32.05), (119.08, 31.80), (119.20, 31.55),
    (119.23, 31.35), (119.05, 31.23), (118.85, 31.30), (118.90, 31.55),
    (118.75, 31.75), (118.55, 31.80), (118.45, 31.95), (118.37, 32.10),
    (118.45, 32.30), (118.58, 32.45),
]  # fmt: skip
ZHENJIANG_OUTLINE: list[tuple[float, float]] = [
    (119.10, 32.20), (119.40, 32.28), (119.70, 32.30), (119.95, 32.15),
    (119.90, 31.95), (119.60, 31.75), (119.35, 31.62), (119.20, 31.55),
    (119.08, 31.80), (119.15, 32.05),
]  # fmt: skip


@dataclass(frozen=True)
class City:
    org_id: str
    name: str
    region_id: str
    region_name: str
    plate_prefix: str
    device_prefix: str
    outline: tuple[tuple[float, float], ...]
    #: the urban core (lat_min, lat_max, lon_min, lon_max) where the road grid and depots are
    core: tuple[float, float, float, float]

    @property
    def polygon(self) -> Polygon:
        return Polygon(self.outline)


CITIES: tuple[City, ...] = (
    City("js.nj", "南京市", "region-nanjing", "南京市行政区域（简化）", "苏A", "NJ",
         tuple(NANJING_OUTLINE), (31.88, 32.22, 118.62, 119.06)),
    City("js.zj", "镇江市", "region-zhenjiang", "镇江市行政区域（简化）", "苏L", "ZJ",
         tuple(ZHENJIANG_OUTLINE), (32.08, 32.24, 119.30, 119.62)),
)  # fmt: skip

CATEGORIES: tuple[str, ...] = ("golf", "ktv", "scenic", "resort", "restaurant", "residential")


@dataclass(frozen=True)
class SensitivePlace:
    zone_id: str
    name: str
    category: str
    lat: float
    lon: float
    #: a circle of this radius, or (when ``polygon_m`` is set) a square of that half-side
    radius_m: float
    polygon: bool = False

    def shape(self) -> Polygon:
        """The zone as a WGS-84 polygon (circles approximated finely, for truth checks)."""
        if not self.polygon:
            pts = [
                offset(self.lat, self.lon, self.radius_m * math.sin(a), self.radius_m * math.cos(a))
                for a in (2 * math.pi * i / 64 for i in range(64))
            ]
            return Polygon([(lon, lat) for lat, lon in pts])
        return Polygon([(lon, lat) for lat, lon in self.corners()])

    def corners(self) -> list[tuple[float, float]]:
        r = self.radius_m
        return [offset(self.lat, self.lon, n, e) for n, e in ((r, -r), (r, r), (-r, r), (-r, -r))]


# Approximate positions near well-known places; names are the places' public names, the
# zones themselves are synthetic.
# fmt: off
SENSITIVE_PLACES: tuple[SensitivePlace, ...] = (
    SensitivePlace("sens-golf-zhongshan", "钟山国际高尔夫俱乐部", "golf", 32.0680, 118.8780, 400.0,
                   polygon=True),
    SensitivePlace("sens-ktv-xinjiekou", "新街口某KTV", "ktv", 32.0425, 118.7840, 120.0),
    SensitivePlace("sens-scenic-xuanwu", "玄武湖景区", "scenic", 32.0760, 118.7960, 500.0, polygon=True),
    SensitivePlace("sens-resort-tangshan", "汤山温泉度假村", "resort", 32.0570, 119.0330, 350.0),
    SensitivePlace("sens-restaurant-hexi", "河西某高档餐厅", "restaurant", 32.0050, 118.7290, 120.0),
    SensitivePlace("sens-residential-xianlin", "仙林某住宅小区（驾驶员住所）", "residential",
                   32.1080, 118.9250, 200.0),
    SensitivePlace("sens-scenic-jinshan", "金山寺景区", "scenic", 32.2180, 119.4170, 300.0),
)
# fmt: on


@dataclass
class RoadGraph:
    """Nodes are (lat, lon); edges carry a class ('city' or 'expressway') and a length."""

    nodes: list[tuple[float, float]] = field(default_factory=list)
    city_of: list[str] = field(default_factory=list)  # org id of the city a node is in, or ""
    adj: list[list[tuple[int, float]]] = field(default_factory=list)

    def add_node(self, lat: float, lon: float, city: str) -> int:
        self.nodes.append((lat, lon))
        self.city_of.append(city)
        self.adj.append([])
        return len(self.nodes) - 1

    def add_edge(self, a: int, b: int) -> None:
        (la, oa), (lb, ob) = self.nodes[a], self.nodes[b]
        d = haversine_m(la, oa, lb, ob)
        self.adj[a].append((b, d))
        self.adj[b].append((a, d))

    def nearest(self, lat: float, lon: float, city: str | None = None) -> int:
        best, best_d = -1, math.inf
        for i, (la, lo) in enumerate(self.nodes):
            if city is not None and self.city_of[i] != city:
                continue
            d = (la - lat) ** 2 + ((lo - lon) * 0.85) ** 2
            if d < best_d:
                best, best_d = i, d
        return best

    def route(self, a: int, b: int, city: str | None = None) -> list[tuple[float, float]]:
        """Shortest path (Dijkstra) from node a to b; with ``city`` it stays on that city's grid."""
        dist = {a: 0.0}
        prev: dict[int, int] = {}
        heap = [(0.0, a)]
        while heap:
            d, u = heapq.heappop(heap)
            if u == b:
                break
            if d > dist[u]:
                continue
            for v, w in self.adj[u]:
                if city is not None and self.city_of[v] != city:
                    continue
                nd = d + w
                if nd < dist.get(v, math.inf):
                    dist[v] = nd
                    prev[v] = u
                    heapq.heappush(heap, (nd, v))
        if b not in dist:
            raise ValueError(f"no road from node {a} to node {b}")
        path = [b]
        while path[-1] != a:
            path.append(prev[path[-1]])
        return [self.nodes[i] for i in reversed(path)]


@dataclass
class Geography:
    cities: tuple[City, ...]
    places: tuple[SensitivePlace, ...]
    graph: RoadGraph
    #: grid nodes usable as ordinary destinations (well away from sensitive places), per city
    destinations: dict[str, list[int]]

    def city(self, org_id: str) -> City:
        for c in self.cities:
            if c.org_id == org_id:
                return c
        raise KeyError(org_id)

    def place(self, zone_id: str) -> SensitivePlace:
        for p in self.places:
            if p.zone_id == zone_id:
                return p
        raise KeyError(zone_id)


GRID_STEP_M = 2_500.0
#: grid nodes keep this far inside their city's outline so ordinary driving never nears the buffer
GRID_MARGIN_M = 2_000.0


def build_geography(seed: int) -> Geography:
    """Deterministic for a seed: the grid jitter is the only random part."""
    rng = random.Random(f"geography:{seed}")
    graph = RoadGraph()
    destinations: dict[str, list[int]] = {}
    shapes = [p.shape() for p in SENSITIVE_PLACES]
    for city in CITIES:
        lat_min, lat_max, lon_min, lon_max = city.core
        inner = prep(city.polygon.buffer(-GRID_MARGIN_M / M_PER_DEG_LAT))
        d_lat = GRID_STEP_M / M_PER_DEG_LAT
        d_lon = GRID_STEP_M / m_per_deg_lon((lat_min + lat_max) / 2)
        rows = int((lat_max - lat_min) / d_lat) + 1
        cols = int((lon_max - lon_min) / d_lon) + 1
        index: dict[tuple[int, int], int] = {}
        for r in range(rows):
            for c in range(cols):
                lat = lat_min + r * d_lat + rng.uniform(-0.15, 0.15) * d_lat
                lon = lon_min + c * d_lon + rng.uniform(-0.15, 0.15) * d_lon
                if inner.contains(Point(lon, lat)):
                    index[(r, c)] = graph.add_node(round(lat, 6), round(lon, 6), city.org_id)
        for (r, c), i in index.items():
            for dr, dc in ((0, 1), (1, 0)):
                j = index.get((r + dr, c + dc))
                if j is not None:
                    graph.add_edge(i, j)
        # ordinary destinations: at least 800 m from every sensitive zone
        destinations[city.org_id] = [
            i
            for i in index.values()
            if all(
                shp.distance(Point(graph.nodes[i][1], graph.nodes[i][0])) * M_PER_DEG_LAT > 800
                for shp in shapes
            )
        ]
    # every sensitive place gets a spur road from its nearest grid node
    for place in SENSITIVE_PLACES:
        city_id = next(c.org_id for c in CITIES if c.polygon.contains(Point(place.lon, place.lat)))
        # two spurs, so the place is on a through road (drive-bys need one)
        nears = sorted(
            (i for i in range(len(graph.nodes)) if graph.city_of[i] == city_id),
            key=lambda i: haversine_m(place.lat, place.lon, *graph.nodes[i]),
        )[:2]
        node = graph.add_node(place.lat, place.lon, city_id)
        for near in nears:
            graph.add_edge(near, node)
    # the Nanjing-Zhenjiang expressway (leaves Nanjing across the shared border)
    nj_east = graph.nearest(32.10, 119.06, "js.nj")
    zj_west = graph.nearest(32.15, 119.30, "js.zj")
    mid = graph.add_node(32.125, 119.18, "")
    graph.add_edge(nj_east, mid)
    graph.add_edge(mid, zj_west)
    return Geography(CITIES, SENSITIVE_PLACES, graph, destinations)


def straight(
    a: tuple[float, float], b: tuple[float, float], step_m: float = 500.0
) -> list[tuple[float, float]]:
    """Points along a straight line (for spur roads the grid does not have)."""
    n = max(1, int(haversine_m(a[0], a[1], b[0], b[1]) / step_m))
    return [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n + 1)]

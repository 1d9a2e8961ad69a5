"""Benchmark: which of 10,000 zones contain a fix — STRtree index vs a linear scan, same run.

    .venv/bin/python bench/bench_zones.py [--zones 10000] [--queries 2000]

Zones are circles (50-500 m) and small polygons scattered over ~100 x 100 km around Nanjing;
query points are uniform over the same box (plus some placed inside zones, so hits occur).
Both methods must return the same zones for every query; the ratio is linear / index time.
"""

from __future__ import annotations

import argparse
import random
import time

from shapely.geometry import Polygon

from geofence import ZoneIndex, circle_zone, make_zone
from geofence.zones import Zone

LAT0, LON0, SPAN = 31.6, 118.3, 0.9


def build_zones(n: int, rng: random.Random) -> list[Zone]:
    zones: list[Zone] = []
    for i in range(n):
        lat, lon = LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN
        if i % 2:
            radius = rng.uniform(50, 500)
            zones.append(circle_zone(f"c{i}", lat, lon, radius, kind="sensitive", category="ktv"))
        else:
            d = rng.uniform(0.001, 0.006)
            poly = Polygon([(lon, lat), (lon + d, lat), (lon + d, lat + d * 0.8), (lon, lat + d)])
            zones.append(make_zone(f"p{i}", "sensitive", poly, category="golf"))
    return zones


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zones", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--linear-queries", type=int, default=200, help="the slow baseline runs on a prefix")
    args = ap.parse_args()
    rng = random.Random(42)
    zones = build_zones(args.zones, rng)
    t0 = time.perf_counter()
    index = ZoneIndex(zones)
    build_s = time.perf_counter() - t0
    points = []
    for i in range(args.queries):
        if i % 4 == 0:  # a quarter of the queries at a zone's centre: guaranteed hits
            c = zones[rng.randrange(len(zones))].geometry.centroid
            points.append((c.y, c.x))
        else:
            points.append((LAT0 + rng.random() * SPAN, LON0 + rng.random() * SPAN))

    t0 = time.perf_counter()
    hits = [index.containing(lat, lon) for lat, lon in points]
    tree_s = (time.perf_counter() - t0) / len(points)

    prefix = points[: args.linear_queries]
    t0 = time.perf_counter()
    linear = [index.containing_linear(lat, lon) for lat, lon in prefix]
    linear_s = (time.perf_counter() - t0) / len(prefix)

    for a, b in zip(hits, linear, strict=False):
        assert [z.id for z in a] == [z.id for z in b], "index and linear scan disagree"
    found = sum(1 for h in hits if h)
    print(f"zones: {len(zones):,} (index built in {build_s * 1000:.0f} ms)")
    print(f"queries with a hit: {found}/{len(hits)}")
    print(f"STRtree lookup:      {tree_s * 1e6:10.1f} us/fix  ({1 / tree_s:,.0f} fixes/s)")
    print(f"linear scan lookup:  {linear_s * 1e6:10.1f} us/fix  ({1 / linear_s:,.0f} fixes/s)")
    print(f"ratio (linear / STRtree): {linear_s / tree_s:,.0f}x faster with the index")


if __name__ == "__main__":
    main()

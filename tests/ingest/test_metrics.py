"""Bridge metrics: counters, per-reason rejections, log line and Prometheus exposition."""

from __future__ import annotations

import urllib.request

import pytest

from ingest.metrics import Metrics, serve_metrics


def make() -> Metrics:
    m = Metrics("a")
    m.inc("received", 5)
    m.inc("produced", 3)
    m.reject("malformed_json")
    m.reject("malformed_json")
    m.gauge("in_flight", "unacked", lambda: 2)
    return m


def test_log_line_lists_counters_rejections_and_gauges() -> None:
    line = make().log_line()
    assert "received=5" in line and "produced=3" in line
    assert "rejected=2(malformed_json:2)" in line
    assert "in_flight=2" in line


def test_unknown_counter_is_an_error() -> None:
    with pytest.raises(KeyError, match="recieved"):
        Metrics("a").inc("recieved")


def test_prometheus_endpoint_serves_the_counters() -> None:
    server = serve_metrics(make(), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'fleetwatch_ingest_received_total{instance="a"} 5' in body
    assert 'fleetwatch_ingest_rejected_total{instance="a",reason="malformed_json"} 2' in body
    assert 'fleetwatch_ingest_in_flight{instance="a"} 2' in body

"""Bridge counters, rendered as a one-line log summary and as Prometheus text exposition."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: name -> help text; order is the exposition order.
COUNTERS: dict[str, str] = {
    "received": "MQTT messages received from the broker",
    "redelivered": "received messages flagged DUP by the broker (redelivery after reconnect)",
    "produced": "valid fixes Kafka acknowledged on the telemetry topic",
    "dead_lettered": "rejected messages Kafka acknowledged on the dead-letter topic",
    "acked": "MQTT PUBACKs sent (only after Kafka acknowledged the record)",
    "send_retries": "Kafka sends the bridge re-issued after a failure",
    "producer_resets": "times the Kafka producer was replaced after failed sends",
    "abandoned": "in-flight messages left unacknowledged because the MQTT connection dropped",
    "connects": "successful MQTT connections (CONNACK)",
}


@dataclass
class Metrics:
    """Thread-safe counters; gauges are read from callables at render time."""

    instance: str
    _counts: Counter[str] = field(default_factory=Counter)
    _rejected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    gauges: dict[str, tuple[str, Callable[[], float]]] = field(default_factory=dict)

    def inc(self, name: str, n: int = 1) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name!r}; known: {', '.join(COUNTERS)}")
        with self._lock:
            self._counts[name] += n

    def reject(self, code: str) -> None:
        with self._lock:
            self._rejected[code] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def snapshot(self) -> dict[str, float | dict[str, int]]:
        with self._lock:
            out: dict[str, float | dict[str, int]] = {name: self._counts[name] for name in COUNTERS}
            out["rejected"] = dict(self._rejected)
        for name, (_, read) in self.gauges.items():
            out[name] = read()
        return out

    def log_line(self) -> str:
        snap = self.snapshot()
        rejected = snap.pop("rejected")
        assert isinstance(rejected, dict)
        parts = [f"{k}={_fmt(v)}" for k, v in snap.items() if not isinstance(v, dict)]
        total = sum(rejected.values())
        detail = ",".join(f"{k}:{v}" for k, v in sorted(rejected.items()))
        parts.append(f"rejected={total}" + (f"({detail})" if detail else ""))
        return f"ingest[{self.instance}] " + " ".join(parts)

    def prometheus(self) -> str:
        snap = self.snapshot()
        label = f'instance="{_escape(self.instance)}"'
        lines: list[str] = []
        for name, help_text in COUNTERS.items():
            metric = f"fleetwatch_ingest_{name}_total"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} counter",
                f"{metric}{{{label}}} {snap[name]}",
            ]
        metric = "fleetwatch_ingest_rejected_total"
        lines += [f"# HELP {metric} messages rejected, by reason code", f"# TYPE {metric} counter"]
        rejected = snap["rejected"]
        assert isinstance(rejected, dict)
        for code, count in sorted(rejected.items()):
            lines.append(f'{metric}{{{label},reason="{_escape(code)}"}} {count}')
        for name, (help_text, _) in self.gauges.items():
            metric = f"fleetwatch_ingest_{name}"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} gauge",
                f"{metric}{{{label}}} {_fmt(snap[name])}",
            ]
        return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3f}"
    return str(int(value)) if isinstance(value, int | float) else str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve_metrics(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` in a daemon thread; returns the server (``.server_port``, ``.shutdown()``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics lives here")
                return
            body = metrics.prometheus().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the bridge's own log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-metrics", daemon=True).start()
    return server

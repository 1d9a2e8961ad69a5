"""What a kill -9 of Mosquitto loses: fixes PUBACKed to the terminal but never delivered.

Mosquitto 2.0 keeps its sessions and queued messages in memory and writes the whole database
every ``autosave_interval`` seconds (and on a clean shutdown). A crash loses every queued
message acknowledged since the last save. For each setting, in the same run and under the same
load, a private broker (the Debian binary) gets a persistent QoS 1 session whose consumer is
offline (the bridge is away or Kafka is down: the queue is the only buffer), a publisher sends
``--rate`` fixes/s and counts PUBACKs, the broker is killed with SIGKILL ``--kill-after`` seconds
after it started, restarted, and the consumer drains what survived. Lost = PUBACKed - delivered.

    .venv/bin/python bench/bench_broker_crash.py [--rate 1000] [--kill-after 29] [--intervals 30,5,1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.table import Table

from fleetwatch.settings import Settings

console = Console()
TOPIC = "fleetwatch/v1/telemetry/crash-dev"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(root: Path, port: int, autosave_s: int) -> subprocess.Popen[bytes]:
    conf = root / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        f"persistence true\npersistence_location {root}/\nautosave_interval {autosave_s}\n"
        "max_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=(root / "log").open("ab"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            probe = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            probe.connect("127.0.0.1", port)
            probe.disconnect()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"private mosquitto did not start; log {root / 'log'}")


def consumer(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-consumer", protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    return client


def broker_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(autosave_s: int, rate: float, kill_after: float) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix=f"fw-crash-{autosave_s}-"))
    port = free_port()
    broker = start_broker(root, port, autosave_s)
    started = time.monotonic()

    # The consumer's session exists but it is away: everything queues in the broker.
    sub = consumer(port)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.loop_start()
    sub.subscribe(TOPIC, qos=1)
    subscribed.wait(10)
    sub.disconnect()
    sub.loop_stop()

    # PUBACK times by packet id (no lock of ours inside paho's callback: paho holds its own).
    acked_at: dict[int, float] = {}
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-publisher", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.on_publish = lambda _c, _u, mid, _r, _p: acked_at.__setitem__(mid, time.monotonic())
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    cpu_before = broker_cpu_s(broker.pid)
    sent: list[tuple[float, mqtt.MQTTMessageInfo]] = []
    next_at = time.monotonic()
    while time.monotonic() - started < kill_after:
        seq = len(sent)
        payload = b'{"v":1,"seq":%d,"pad":"%s"}' % (seq, b"x" * 200)  # a fix-sized message
        sent.append((time.monotonic(), pub.publish(TOPIC, payload, qos=1)))
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    cpu = broker_cpu_s(broker.pid) - cpu_before
    broker.send_signal(signal.SIGKILL)
    broker.wait(10)
    pub.loop_stop()
    if len(sent) > 65535:
        raise SystemExit("keep rate x kill-after under 65,535 (packet ids would repeat)")
    acked_at_kill = {seq for seq, (_, info) in enumerate(sent) if info.is_published()}
    worst_ack_s = max((acked_at[info.mid] - t for t, info in sent if info.mid in acked_at), default=0.0)

    broker = start_broker(root, port, autosave_s)
    delivered: set[int] = set()
    last_message = [time.monotonic()]

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        delivered.add(int(msg.payload.split(b'"seq":', 1)[1].split(b",", 1)[0]))
        last_message[0] = time.monotonic()

    sub = consumer(port)
    sub.on_message = on_message
    sub.loop_start()
    while time.monotonic() - last_message[0] < 3:
        time.sleep(0.2)
    sub.disconnect()
    sub.loop_stop()
    broker.terminate()
    broker.wait(10)
    lost = acked_at_kill - delivered
    return {
        "acked": len(acked_at_kill),
        "delivered": len(delivered & acked_at_kill),
        "lost": len(lost),
        "lost_s": len(lost) / rate,
        "worst_ack_s": worst_ack_s,
        "broker_cpu_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="fixes/s published (default 1000)")
    parser.add_argument("--kill-after", type=float, default=29.0, help="SIGKILL after this many s (29)")
    parser.add_argument(
        "--intervals",
        default=f"30,{Settings().mqtt_autosave_interval}",
        help="autosave_interval values to compare (default: Mosquitto's former 30 and the stack's)",
    )
    args = parser.parse_args()
    table = Table(title=f"kill -9 of Mosquitto after {args.kill_after:g} s at {args.rate:,.0f} fixes/s")
    for column in ("autosave_interval", "PUBACKed", "delivered after restart", "lost", "lost (s of load)",
                   "slowest PUBACK", "broker CPU"):
        table.add_column(column, justify="right")
    for interval in (int(v) for v in args.intervals.split(",")):
        console.print(f"autosave_interval {interval}: loading ...")
        r = run(interval, args.rate, args.kill_after)
        table.add_row(
            f"{interval} s", f"{r['acked']:,.0f}", f"{r['delivered']:,.0f}", f"{r['lost']:,.0f}",
            f"{r['lost_s']:.1f}", f"{r['worst_ack_s'] * 1000:.0f} ms", f"{r['broker_cpu_s']:.2f} s",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()

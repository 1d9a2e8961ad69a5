"""The MQTT -> Kafka bridge: PUBACK only after Kafka has the record, bounded in-flight work.

Threads and hand-offs:

* paho's network thread runs `_on_message`; it only records the message in the in-flight
  window and queues it (never blocks on Kafka, so keep-alives and PUBACKs keep flowing);
* one worker thread takes whatever has arrived, validates, builds the records and calls
  ``producer.send`` (which may block for metadata while Kafka is away: that is fine here); it
  also looks for failed sends among the outstanding records and re-sends them;
* kafka-python's sender thread completes the futures; the success callback marks the message
  done in the window, which sends the PUBACKs that became due, in receive order.

The broker never has more than ``receive_maximum`` unacknowledged QoS 1 messages out to us, so
the queue, the window and the producer's buffer are bounded by it: when Kafka stalls, acks
stop, the broker stops sending and keeps the rest in our persistent session.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer

import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner
from kafka.producer.future import FutureRecordMetadata
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleetwatch import topics
from fleetwatch.kafka_io import make_producer
from fleetwatch.mqtt_conn import configure_tls, mqtt_address
from fleetwatch.records import DeadLetter, DeadLetterStage, Fix, Rejection
from fleetwatch.settings import Settings
from ingest.inflight import InFlightWindow, Ticket
from ingest.metrics import Metrics, serve_metrics
from ingest.mqtt_client import BufferedClient
from ingest.registry import RegistryCache, RegistryTable
from ingest.validate import BAD_TOPIC, check_fix

log = logging.getLogger("fleetwatch.ingest")

SHARE_GROUP = "fleetwatch-bridge"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """How one bridge instance connects and behaves; several instances share the load."""

    instance: str = "default"
    telemetry_topic: str = topics.TELEMETRY
    dlq_topic: str = topics.TELEMETRY_DLQ
    share_group: str = SHARE_GROUP
    #: Upper bound on unacknowledged QoS 1 messages the broker sends us (MQTT 5 Receive Maximum).
    receive_maximum: int = 1000
    #: How long the broker keeps our session (subscription + queued messages) while we are away.
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    metrics_host: str = "127.0.0.1"
    #: Prometheus endpoint port; None disables it, 0 picks a free port.
    metrics_port: int | None = None
    log_interval_s: float = 10.0
    #: How long the producer itself retries a record before its future fails and the bridge
    #: re-sends it (kafka-python's delivery_timeout_ms).
    delivery_timeout_s: float = 120.0
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    drain_timeout_s: float = 30.0
    #: Longest wait between MQTT reconnect attempts. Short on purpose: Mosquitto 2.0.11 restores our
    #: shared subscription from its file after a restart but routes nothing to it until we subscribe
    #: again, so what terminals publish before we are back is acknowledged to them and lost.
    mqtt_reconnect_max_s: int = 2
    #: Limit this instance to these devices' topics (a canary, or a test that must not see the
    #: rest of the machine's traffic); empty = every device.
    only_devices: tuple[str, ...] = ()

    @property
    def client_id(self) -> str:
        return f"fleetwatch-bridge-{self.instance}"


class KeyCachingPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Kafka's default mapping (murmur2 of the key), computed once per vehicle and partition count:
    kafka-python's pure-Python murmur2 was ~6 % of the bridge's CPU in the profile."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._max_keys = max_keys
        self._cache: dict[tuple[str, bytes], tuple[int, int]] = {}

    def partition(
        self, topic: str, key: object, serialized_key: bytes | None, value: object,
        serialized_value: object, cluster: ClusterMetadata,
    ) -> int:  # fmt: skip
        if serialized_key is None:
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        count = len(cluster.partitions_for_topic(topic) or ())
        cached = self._cache.get((topic, serialized_key))
        if cached is not None and cached[0] == count:
            return cached[1]
        chosen = int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        if len(self._cache) >= self._max_keys:
            self._cache.clear()
        self._cache[(topic, serialized_key)] = (count, chosen)
        return chosen


@dataclass(slots=True)
class _Work:
    ticket: Ticket
    topic: str
    payload: bytes
    received_at: datetime
    attempts: int = 0
    record: tuple[str, bytes, bytes, str] | None = None  # (kafka topic, key, value, counter)
    future: FutureRecordMetadata | None = None  # of its latest send


class Bridge:
    """One running bridge instance. `start()`, then `stop()` (graceful) from any thread."""

    def __init__(
        self, settings: Settings, config: BridgeConfig | None = None, *, registry: RegistryTable | None = None
    ):
        self.settings = settings
        self.config = config or BridgeConfig()
        self.registry = registry if registry is not None else RegistryCache(settings, "bridge")
        self.metrics = Metrics(self.config.instance)
        self.window = InFlightWindow()
        # paho's thread appends, the worker takes everything there is in one go: one wake-up per
        # burst instead of a lock hand-off per message (the profile's queue/condition cost).
        # QoS 1 traffic is already bounded by Receive Maximum; the bound here also holds QoS 0
        # floods back (paho's thread waits, TCP pushes back on the broker).
        self._inbox: deque[_Work] = deque()
        self._inbox_limit = 2 * self.config.receive_maximum
        self._inbox_ready = threading.Event()
        self._retries: list[tuple[float, int, _Work]] = []
        self._retry_seq = itertools.count()
        self._retry_lock = threading.Lock()
        self._stopping = threading.Event()  # no new work is accepted (messages stay with the broker)
        # Admitting a message (the stopping check + its place in the window) is atomic with
        # setting `_stopping`: otherwise a message admitted just after `stop` saw an empty window
        # is produced, but its PUBACK comes after the disconnect and the broker redelivers it.
        self._admit = threading.Lock()
        self._closed = threading.Event()  # worker may exit
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._last_message_at = time.monotonic()
        self._producer: KafkaProducer | None = None
        self._reset_needed = threading.Event()
        self._consecutive_resets = 0
        self._next_failure_check = 0.0
        self._outstanding: dict[int, _Work] = {}  # sent to the current producer, not yet acknowledged
        self._outstanding_lock = threading.Lock()
        self._headers = [("fw-bridge", self.config.instance.encode())]
        self._partitioner = KeyCachingPartitioner()
        self._worker: threading.Thread | None = None
        self._reporter: threading.Thread | None = None
        self._metrics_server: ThreadingHTTPServer | None = None
        self._client = self._make_client()
        self.metrics.gauge("in_flight", "received messages not yet acknowledged", lambda: len(self.window))
        self.metrics.gauge("queued", "received messages waiting for the worker", lambda: len(self._inbox))
        self.metrics.gauge("retry_pending", "failed sends waiting to be re-sent", lambda: len(self._retries))
        self.metrics.gauge(
            "connected", "1 while the MQTT connection is up", lambda: float(self._connected.is_set())
        )
        self.metrics.gauge("registry_devices", "devices in the vehicle registry", lambda: len(self.registry))

    # ------------------------------------------------------------------ lifecycle

    @property
    def share_topic(self) -> str:
        return f"$share/{self.config.share_group}/{self.settings.mqtt_topic_prefix}/+"

    @property
    def subscriptions(self) -> list[str]:
        """The shared subscription, or one per device when the instance is limited to some devices."""
        if not self.config.only_devices:
            return [self.share_topic]
        base = f"$share/{self.config.share_group}/{self.settings.mqtt_topic_prefix}"
        return [f"{base}/{device}" for device in self.config.only_devices]

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.server_port if self._metrics_server else None

    def start(self) -> None:
        """Connect to Kafka (waiting for it), read the registry, connect to MQTT; return once subscribed."""
        self._producer = self._connect_kafka()
        self.registry.start()
        if not len(self.registry):
            log.warning("%s is empty: every fix is dead-lettered as unknown_device until devices are "
                        "registered (`fleetwatch devices add`)", self.registry.source)
        self._worker = threading.Thread(target=self._work_loop, name="ingest-worker", daemon=True)
        self._worker.start()
        if self.config.metrics_port is not None:
            self._metrics_server = serve_metrics(
                self.metrics, self.config.metrics_host, self.config.metrics_port
            )
            log.info("metrics on http://%s:%d/metrics", self.config.metrics_host, self.metrics_port)
        if self.config.log_interval_s > 0:
            self._reporter = threading.Thread(target=self._report_loop, name="ingest-report", daemon=True)
            self._reporter.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self._client.connect_async(
            *mqtt_address(self.settings),
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        if not self._subscribed.wait(60):
            raise TimeoutError(
                "no MQTT subscription within 60 s ({}:{})".format(*mqtt_address(self.settings))
            )

    def stop(self, *, leave: bool = False) -> None:
        """Graceful shutdown: take no new messages, finish and acknowledge in-flight work, disconnect.

        By default the MQTT session is kept, so messages published while this instance is
        down wait for it in the broker. ``leave=True`` is for removing an instance for good:
        it unsubscribes first (the shared group then routes everything to the other members),
        finishes what already arrived, and ends the session.
        """
        if leave and self._connected.is_set():
            self._client.unsubscribe(self.subscriptions)
            self._unsubscribed.wait(10)
            # Messages the broker had already queued for us still arrive after UNSUBACK.
            while time.monotonic() - self._last_message_at < 1.0:
                time.sleep(0.2)
        with self._admit:
            self._stopping.set()
        drained = self.window.wait_empty(self.config.drain_timeout_s)
        if self._producer is not None:
            try:
                self._producer.flush(timeout=self.config.drain_timeout_s)
            except Exception as exc:  # Kafka still away: what is unacked gets redelivered
                log.warning("shutdown: producer flush failed (%s)", exc)
        drained = self.window.wait_empty(1.0) and drained
        if not drained:
            log.warning(
                "shutdown: %d messages still unacknowledged; the broker will redeliver them", len(self.window)
            )
        props = None
        if leave:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        # paho's loop_stop does not wait for queued packets: without this the last PUBACKs can be
        # left unsent, and the broker redelivers (duplicates) what Kafka already holds. on_disconnect
        # runs once the DISCONNECT, queued after them, has been written; loop_stop then waits for
        # the client's graceful close (the broker must also *read* them: BufferedClient).
        deadline = time.monotonic() + 5.0
        while self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._client.loop_stop()
        self._closed.set()
        if self._worker is not None:
            self._worker.join(5)
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.registry.stop()
        log.info("stopped: %s", self.metrics.log_line())

    # ------------------------------------------------------------------ MQTT side (paho thread)

    def _make_client(self) -> mqtt.Client:
        client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=self.config.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self.settings.mqtt_bridge_user, self.settings.secret("mqtt_bridge_password"))
        configure_tls(client, self.settings)
        client.manual_ack_set(True)
        client.reconnect_delay_set(1, self.config.mqtt_reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused: %s", reason_code)
            return
        self._connected.set()
        self.metrics.inc("connects")
        log.info("MQTT connected as %s (session present: %s)", self.config.client_id, flags.session_present)
        if flags.session_present:
            # The broker kept our subscriptions. Its SUBACK to the re-subscribe below comes behind
            # every message queued for us, which a deep backlog delays past start's wait.
            self._subscribed.set()
        if not self._stopping.is_set():
            # Re-subscribing an existing subscription is harmless and covers an expired session.
            client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        dropped = self.window.new_generation()
        if dropped:
            self.metrics.inc("abandoned", dropped)
        if not self._stopping.is_set():
            log.warning(
                "MQTT connection lost (%s); %d unacknowledged messages will be redelivered",
                reason_code,
                dropped,
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription to %s refused: %s", self.subscriptions, failed)
            return
        self._subscribed.set()

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._unsubscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._admit:
            if self._stopping.is_set():
                return  # not acknowledged: stays in our session for the next start
            ticket = self.window.add(msg.mid, msg.qos)
        self._last_message_at = time.monotonic()
        self.metrics.inc("received")
        if msg.dup:
            self.metrics.inc("redelivered")
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")  # rejected as bad_topic below
        while len(self._inbox) >= self._inbox_limit and not self._closed.is_set():
            time.sleep(0.001)
        self._inbox.append(_Work(ticket, topic, bytes(msg.payload), datetime.now(UTC)))
        self._inbox_ready.set()

    def _ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)
        self.metrics.inc("acked")

    # ------------------------------------------------------------------ Kafka side

    def _connect_kafka(self) -> KafkaProducer:
        delay = self.config.retry_initial_s
        while True:
            try:
                delivery_ms = int(self.config.delivery_timeout_s * 1000)
                return make_producer(
                    self.settings,
                    client_id=self.config.client_id,
                    role="bridge",
                    delivery_timeout_ms=delivery_ms,
                    # Kafka requires delivery.timeout >= linger + request timeout.
                    request_timeout_ms=min(15_000, delivery_ms // 2),
                    partitioner=self._partitioner,
                )
            except Exception as exc:  # NoBrokersAvailable and friends: Kafka is not there yet
                if self._stopping.is_set():
                    raise
                log.warning(
                    "Kafka at %s unavailable (%s); retrying in %.1f s",
                    self.settings.kafka_bootstrap,
                    exc,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)

    def _classify(self, work: _Work) -> tuple[str, bytes, bytes, str]:
        valid = check_fix(
            work.payload,
            work.topic,
            registry=self.registry,
            topic_prefix=self.settings.mqtt_topic_prefix,
            now=work.received_at,
            max_future=timedelta(seconds=self.settings.max_future_seconds),
            max_speed_kmh=self.settings.max_speed_kmh,
            max_payload_bytes=self.settings.ingest_max_payload_bytes,
        )
        if isinstance(valid, Fix):
            return (self.config.telemetry_topic, valid.key, valid.to_json(), "produced")
        return self._dead_letter(work, valid)

    def _dead_letter(self, work: _Work, rejection: Rejection) -> tuple[str, bytes, bytes, str]:
        self.metrics.reject(rejection.code)
        letter = DeadLetter.of(
            rejection,
            payload=work.payload,
            source_topic=work.topic,
            received_at=work.received_at,
            stage=DeadLetterStage.BRIDGE,
            instance=self.config.instance,
        )
        key = work.topic.rsplit("/", 1)[-1].encode() if rejection.code != BAD_TOPIC else b""
        return (self.config.dlq_topic, key, letter.to_json(), "dead_lettered")

    def _work_loop(self) -> None:
        while not self._closed.is_set():
            self._check_failed_sends()
            if self._reset_needed.is_set():
                self._reset_producer()
                continue
            for work in self._next_batch():
                if not self.window.is_current(work.ticket):
                    continue  # its connection is gone; the broker redelivers it
                if work.record is None:
                    try:
                        work.record = self._classify(work)
                    except Exception as exc:  # a bug must not stop the pipeline: dead-letter it
                        log.exception("could not classify a message from %s", work.topic)
                        work.record = self._dead_letter(
                            work, Rejection("internal_error", None, "bridge error", repr(exc))
                        )
                self._send(work)

    def _next_batch(self) -> list[_Work]:
        """Due re-sends first (one at a time, they wait on Kafka), else everything received so far."""
        with self._retry_lock:
            if self._retries and self._retries[0][0] <= time.monotonic():
                return [heapq.heappop(self._retries)[2]]
            wait = min(0.2, self._retries[0][0] - time.monotonic()) if self._retries else 0.2
        if not self._inbox_ready.wait(max(wait, 0.001)):
            return []
        self._inbox_ready.clear()  # before taking: an append racing with us sets it again
        inbox, batch = self._inbox, []
        while inbox:
            batch.append(inbox.popleft())
        return batch

    def _send(self, work: _Work) -> None:
        assert self._producer is not None and work.record is not None
        kafka_topic, key, value, _ = work.record
        with self._outstanding_lock:
            self._outstanding[id(work)] = work
        try:
            future = self._producer.send(kafka_topic, key=key, value=value, headers=self._headers)
        except Exception as exc:  # metadata timeout / buffer full while Kafka is away
            with self._outstanding_lock:
                self._outstanding.pop(id(work), None)
            self._retry(work, exc)
            return
        work.future = future
        future.add_callback(self._on_sent, work)

    def _on_sent(self, work: _Work, _metadata: object) -> None:
        assert work.record is not None
        with self._outstanding_lock:
            first = self._outstanding.pop(id(work), None) is not None
        if first:
            self.metrics.inc(work.record[3])
        self._consecutive_resets = 0
        self.window.complete(work.ticket, self._ack)

    def _check_failed_sends(self) -> None:
        """A send that failed after the producer's own retries means: replace the producer.

        An expired batch can leave kafka-python's idempotent producer unable to send again (seen
        after a 30 s broker freeze): rather than trusting it, replace it and re-send everything
        outstanding, in receive order, on a fresh producer id. Failures are looked for every
        0.2 s among the outstanding records instead of with an errback per record: registering
        one takes the future's lock, contended by the sender thread (~5 % of the bridge's CPU).
        """
        now = time.monotonic()
        if now < self._next_failure_check or self._reset_needed.is_set():
            return
        self._next_failure_check = now + 0.2
        with self._outstanding_lock:
            failed = next(
                (w.future for w in self._outstanding.values() if w.future is not None and w.future.failed()),
                None,
            )
        if failed is not None:
            exc = failed.exception
            log.warning("Kafka send failed (%s: %s); replacing the producer", type(exc).__name__, exc)
            self._reset_needed.set()

    def _reset_producer(self) -> None:
        self._consecutive_resets += 1
        delay = min(
            self.config.retry_initial_s * 2 ** (self._consecutive_resets - 1), self.config.retry_max_s
        )
        if self._closed.wait(delay):
            return
        old = self._producer
        self._reset_needed.clear()
        if old is not None:
            threading.Thread(
                target=old.close, kwargs={"timeout": 0}, name="producer-close", daemon=True
            ).start()
        self._producer = self._connect_kafka()
        with self._outstanding_lock:
            pending = sorted(
                self._outstanding.values(), key=lambda w: (w.ticket.generation, w.ticket.position)
            )
            self._outstanding.clear()
        self.metrics.inc("producer_resets")
        log.warning("new Kafka producer; re-sending %d outstanding records", len(pending))
        for work in pending:
            if self.window.is_current(work.ticket):
                self.metrics.inc("send_retries")
                self._send(work)

    def _retry(self, work: _Work, exc: BaseException) -> None:
        work.attempts += 1
        delay = min(self.config.retry_initial_s * 2 ** (work.attempts - 1), self.config.retry_max_s)
        self.metrics.inc("send_retries")
        if work.attempts == 1 or work.attempts % 10 == 0:
            log.warning(
                "Kafka send failed (%s: %s); attempt %d, retrying in %.1f s",
                type(exc).__name__,
                exc,
                work.attempts,
                delay,
            )
        with self._retry_lock:
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._retry_seq), work))

    def _report_loop(self) -> None:
        while not self._closed.wait(self.config.log_interval_s):
            log.info("%s", self.metrics.log_line())

"""The JT/T 808 gateway: asyncio TCP server, terminal sessions, Kafka out, 0x8001 only after Kafka acks.

One task reads each connection: it splits frames, decodes them, sends fixes and dead letters
to Kafka and queues the reply. A second task per connection awaits the Kafka acknowledgements
in receive order and only then writes the reply (the same rule as the MQTT bridge's PUBACK),
so a terminal re-sends whatever it never saw acknowledged. If Kafka fails a send, the
connection is closed without the reply: the terminal keeps that data and re-sends it.

Kafka I/O is the bridge's kafka-python producer (`fleetwatch.kafka_io.make_producer`): its
sender thread completes the records and hands the acknowledgements to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets, make_producer
from fleetwatch.records import ContractError, DeadLetter, DeadLetterStage, Fix, Rejection
from fleetwatch.settings import Settings
from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameError, FrameSplitter, Header, decode_frame, encode_frame
from ingest.jt808.mapping import location_to_fix
from ingest.jt808.reassembly import Reassembler
from ingest.registry import RegistryCache, RegistryTable
from ingest.validate import UNKNOWN_DEVICE

log = logging.getLogger("fleetwatch.jt808")

#: Dead-letter codes of the gateway (besides the contract's and the codec's own).
NOT_AUTHENTICATED = "not_authenticated"
IDENTITY_MISMATCH = "identity_mismatch"
UNKNOWN_MESSAGE = "unknown_message"
ENCRYPTED = "encrypted"
INCOMPLETE_PACKAGE = "incomplete_package"

#: Codec errors after which the header was readable and the standard's "message error" reply applies.
_ANSWERABLE = {"bad_check_code", "truncated", "length_mismatch", "bad_value", "bad_bcd"}

#: The frame's hex in a dead letter's message is cut here (the base64 payload always has it whole).
_HEX_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    instance: str = "default"
    telemetry_topic: str = topics.TELEMETRY
    dlq_topic: str = topics.TELEMETRY_DLQ
    reassembly_timeout_s: float = 60.0
    drain_timeout_s: float = 30.0

    @property
    def client_id(self) -> str:
        return f"fleetwatch-jt808-{self.instance}"


def auth_code_for(secret: str, phone: str) -> str:
    """The auth code issued in 0x8100: stateless, so any gateway instance can check it."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(slots=True)
class _Reply:
    """What to write back once ``pending`` (Kafka acknowledgements) have all succeeded."""

    pending: list[Awaitable[object]]
    frame: bytes | None
    close: bool = False
    counts_as: str | None = None  # stats key incremented once acknowledged


@dataclass(slots=True)
class _Session:
    peer: str
    writer: asyncio.StreamWriter
    replies: asyncio.Queue[_Reply | None]
    phone: str | None = None  # set by a successful 0x0102
    version: int | None = None
    flow: int = 0
    tokens: float = 0.0
    refilled: float = field(default_factory=time.monotonic)
    auth_failures: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    reassembler: Reassembler = field(default_factory=Reassembler)

    def next_flow(self) -> int:
        self.flow = (self.flow + 1) & 0xFFFF
        return self.flow

    @property
    def source(self) -> str:
        return f"jt808/{self.phone}" if self.phone else f"jt808/{self.peer}"


def _resolve(future: asyncio.Future[object], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Gateway:
    """`await start()`, then `await stop()`; ``port`` is the bound port (0 in settings picks one)."""

    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig | None = None,
        *,
        registry: RegistryTable | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or GatewayConfig()
        self.registry = registry if registry is not None else RegistryCache(settings, "jt808")
        self.stats: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._secret = settings.secret("jt808_auth_secret")
        self._max_future = timedelta(seconds=settings.max_future_seconds)
        self._server: asyncio.Server | None = None
        self._producer: KafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._completions: deque[tuple[asyncio.Future[object], BaseException | None]] = deque()
        self._completions_lock = threading.Lock()
        self._wake_scheduled = False
        self._open: dict[asyncio.Task[None], _Session] = {}  # connection task -> its session
        self._sweeper: asyncio.Task[None] | None = None
        self._headers = [("fw-gateway", f"jt808-{self.config.instance}".encode())]
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # kafka-python, as in the bridge: its sender thread keeps Kafka I/O off this event loop,
        # and ``max_block_ms=0`` makes a full buffer an immediate error we wait out in `_send`.
        self._producer = await self._loop.run_in_executor(
            None, lambda: make_producer(self.settings, client_id=self.config.client_id, role="jt808",
                                        max_block_ms=0)
        )
        for topic in (self.config.telemetry_topic, self.config.dlq_topic):
            # Topics are never auto-created: a missing one is a clear error now, not a timeout later.
            try:
                await self._loop.run_in_executor(
                    None, lambda topic=topic: end_offsets(self.settings, topic, role="jt808")  # type: ignore[misc]
                )
            except UnknownTopicOrPartitionError:
                raise RuntimeError(
                    f"Kafka topic {topic!r} does not exist (run `fleetwatch stack up`)"
                ) from None
        await self._loop.run_in_executor(None, self.registry.start)
        self._server = await asyncio.start_server(
            self._on_connect, self.settings.jt808_host, self.settings.jt808_port, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_idle())
        log.info("JT/T 808 gateway on %s:%d", self.settings.jt808_host, self.port)

    async def stop(self) -> None:
        """Stop accepting, let every connection finish its acknowledgements, flush Kafka."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._open):
            task.cancel()
        if self._open:
            await asyncio.wait(list(self._open), timeout=self.config.drain_timeout_s)
        if self._producer is not None and self._loop is not None:
            producer, drain = self._producer, self.config.drain_timeout_s
            await self._loop.run_in_executor(None, lambda: producer.close(timeout=drain))
        if self._server is not None:
            await self._server.wait_closed()
        self.registry.stop()

    @property
    def connections(self) -> int:
        return len(self._open)

    # ------------------------------------------------------------------ per connection

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer_info = writer.get_extra_info("peername")
        peer = f"{peer_info[0]}:{peer_info[1]}" if peer_info else "unknown"
        session = _Session(
            peer,
            writer,
            asyncio.Queue(maxsize=self.settings.jt808_max_in_flight),
            tokens=float(self.settings.jt808_burst_frames),
        )
        self.stats["connections"] += 1
        self._open[task] = session
        replier = asyncio.create_task(self._reply_loop(session))
        try:
            await self._read_loop(reader, session)
        except asyncio.CancelledError:
            pass  # shutdown: what was received still gets its acknowledgement below
        except (ConnectionError, OSError) as exc:
            log.debug("%s: connection error %s", peer, exc)
        except Exception as exc:  # e.g. Kafka refused the send: this frame stays unanswered, the
            # terminal re-sends it on a new connection; the gateway itself carries on.
            self.stats["connection_errors"] += 1
            log.warning("%s: closing the connection after %s: %s", session.source, type(exc).__name__, exc)
        finally:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, ConnectionError):
                await self._expire_parts(session, force=True)
            # The end marker goes in behind every reply still waiting for Kafka; if the reply task
            # already stopped (it closed the connection), nothing waits for it.
            closing = asyncio.ensure_future(session.replies.put(None))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({replier}, timeout=self.config.drain_timeout_s)
            closing.cancel()
            replier.cancel()
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 5.0)
            self._open.pop(task, None)

    async def _read_loop(self, reader: asyncio.StreamReader, session: _Session) -> None:
        splitter = FrameSplitter()
        while not session.writer.is_closing():
            data = await reader.read(16384)
            session.last_seen = time.monotonic()
            if not data:
                return
            frames, overflow = splitter.feed(data)
            if overflow is not None:
                await self._reject_raw(
                    session,
                    FrameError("oversized_frame", f"{len(overflow)} bytes without a closing 0x7e"),
                    overflow,
                )
            for content in frames:
                await self._throttle(session)
                await self._on_frame(session, content)
            await self._expire_parts(session)

    async def _sweep_idle(self) -> None:
        """Close connections silent for longer than the idle timeout (one timer for all of them:
        a per-read timeout would cost a task per read at 10,000 connections)."""
        idle = self.settings.jt808_idle_timeout_s
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            cutoff = time.monotonic() - idle
            for session in list(self._open.values()):
                if session.last_seen < cutoff and not session.writer.is_closing():
                    self.stats["idle_closed"] += 1
                    log.info("%s: idle for %.0f s, closing", session.source, idle)
                    session.writer.close()

    async def _throttle(self, session: _Session) -> None:
        """Token bucket: over the rate, stop reading this socket until a token is due."""
        rate = self.settings.jt808_frames_per_s
        now = time.monotonic()
        session.tokens = min(
            float(self.settings.jt808_burst_frames), session.tokens + (now - session.refilled) * rate
        )
        session.refilled = now
        if session.tokens < 1:
            self.stats["throttled"] += 1
            await asyncio.sleep((1 - session.tokens) / rate)
            session.tokens = 1.0
            session.refilled = time.monotonic()
        session.tokens -= 1

    async def _reply_loop(self, session: _Session) -> None:
        while True:
            reply = await session.replies.get()
            if reply is None:
                return
            try:
                for pending in reply.pending:
                    await pending
            except Exception as exc:  # Kafka did not take it: no reply, the terminal re-sends
                self.stats["kafka_failures"] += 1
                log.warning("%s: Kafka send failed (%s); closing without acknowledging", session.source, exc)
                session.writer.close()
                return
            if reply.counts_as:
                self.stats[reply.counts_as] += 1
            if reply.frame is not None and not session.writer.is_closing():
                session.writer.write(reply.frame)
                self.stats["replies"] += 1
            if reply.close:
                session.writer.close()
                return

    # ------------------------------------------------------------------ frames

    def _respond(self, session: _Session, header: Header, msg_id: int, body: bytes) -> bytes:
        out = Header(msg_id, header.phone, session.next_flow(), version=header.version)
        return encode_frame(out, body)

    def _general(self, session: _Session, header: Header, result: int) -> bytes:
        body = m.encode_general_response(header.flow, header.msg_id, result)
        return self._respond(session, header, m.PLATFORM_RESPONSE, body)

    async def _on_frame(self, session: _Session, content: bytes) -> None:
        self.stats["frames"] += 1
        raw = b"\x7e" + content + b"\x7e"
        try:
            frame = decode_frame(content)
        except FrameError as exc:
            await self._reject_raw(session, exc, raw)
            return
        header = frame.header
        body = frame.body
        if header.subpackage:
            whole = session.reassembler.add(header, body, raw, time.monotonic())
            if whole is None:
                # Parts are only held in memory: acknowledging them now is the standard's flow;
                # the reply to the final part waits for Kafka like any other.
                await self._queue(session, _Reply([], self._general(session, header, m.RESULT_OK)))
                return
            body = whole
        if header.encryption:
            error = FrameError(ENCRYPTED, f"encryption mode {header.encryption} is not supported",
                               field="body properties", header=header)  # fmt: skip
            await self._reject(session, error, raw, reply=m.RESULT_NOT_SUPPORTED)
            return
        handler = {
            m.HEARTBEAT: self._on_heartbeat,
            m.REGISTER: self._on_register,
            m.AUTHENTICATE: self._on_authenticate,
            m.LOCATION: self._on_location,
            m.BATCH_LOCATION: self._on_location,
            m.LOGOUT: self._on_logout,
            m.TERMINAL_RESPONSE: self._on_terminal_response,
        }.get(header.msg_id)
        if handler is None:
            error = FrameError(UNKNOWN_MESSAGE, f"message id 0x{header.msg_id:04x} is not supported",
                               field="msg_id", header=header)  # fmt: skip
            await self._reject(session, error, raw, reply=m.RESULT_NOT_SUPPORTED)
            return
        try:
            await handler(session, header, body, raw)
        except FrameError as exc:
            await self._reject(session, FrameError(exc.code, exc.reason, field=exc.field, header=header), raw,
                               reply=m.RESULT_MESSAGE_ERROR)  # fmt: skip

    async def _vehicle_of(self, device_id: str) -> str | None:
        """The registry's answer; an unknown terminal waits for a catch-up off the event loop."""
        vehicle = self.registry.cached(device_id)
        if vehicle is None and self._loop is not None:
            vehicle = await self._loop.run_in_executor(None, self.registry.vehicle_of, device_id)
        return vehicle

    async def _on_heartbeat(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        await self._queue(
            session, _Reply([], self._general(session, header, m.RESULT_OK), counts_as="heartbeats")
        )

    async def _on_terminal_response(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        self.stats["terminal_responses"] += 1  # answers to commands we never send today

    async def _on_logout(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        await self._queue(session, _Reply([], self._general(session, header, m.RESULT_OK), close=True))

    async def _on_register(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        reg = m.decode_registration(body, version=header.version)
        vehicle = await self._vehicle_of(header.phone)
        code = ""
        if vehicle is None:
            result = m.REGISTER_NO_TERMINAL
        elif reg.plate_color != 0 and reg.plate and reg.plate != vehicle:
            result = m.REGISTER_NO_VEHICLE
        else:
            result = m.REGISTER_OK
            code = auth_code_for(self._secret, header.phone)
        self.stats["registered" if result == m.REGISTER_OK else "registrations_refused"] += 1
        if result != m.REGISTER_OK:
            log.info("%s: registration of %s (plate %r) refused: result %d", session.peer, header.phone,
                     reg.plate, result)  # fmt: skip
        reply = self._respond(session, header, m.REGISTER_RESPONSE,
                              m.encode_register_response(header.flow, result, code))  # fmt: skip
        await self._queue(session, _Reply([], reply))

    async def _on_authenticate(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        auth = m.decode_authentication(body, version=header.version)
        known = await self._vehicle_of(header.phone) is not None
        good = known and hmac.compare_digest(auth.auth_code, auth_code_for(self._secret, header.phone))
        if good:
            session.phone, session.version = header.phone, header.version
            self.stats["authenticated"] += 1
        else:
            session.auth_failures += 1
            self.stats["auth_failures"] += 1
            log.info("%s: authentication as %s failed (%s)", session.peer, header.phone,
                     "wrong auth code" if known else "not in the registry")  # fmt: skip
        result = m.RESULT_OK if good else m.RESULT_FAILURE
        # Three failures on one connection: a misconfigured or hostile client, hang up.
        await self._queue(session, _Reply([], self._general(session, header, result),
                                          close=session.auth_failures >= 3))  # fmt: skip

    async def _on_location(self, session: _Session, header: Header, body: bytes, raw: bytes) -> None:
        if session.phone is None:
            error = FrameError(NOT_AUTHENTICATED, "location before a successful 0x0102 authentication",
                               field="phone", header=header)  # fmt: skip
            await self._reject(session, error, raw, reply=m.RESULT_FAILURE)
            return
        if header.phone != session.phone:
            error = FrameError(IDENTITY_MISMATCH, f"{header.phone} on a connection authenticated as "
                               f"{session.phone}", field="phone", header=header)  # fmt: skip
            await self._reject(session, error, raw, reply=m.RESULT_FAILURE)
            return
        if header.msg_id == m.LOCATION:
            locations = [m.decode_location(body)]
        else:
            batch = m.decode_batch(body)
            locations = batch.locations
            self.stats["blind_area_batches" if batch.blind_area else "batches"] += 1
        received_at = datetime.now(UTC)
        vehicle = await self._vehicle_of(session.phone)
        pending: list[Awaitable[object]] = []
        for index, loc in enumerate(locations):
            where = f" (item {index} of {len(locations)})" if header.msg_id == m.BATCH_LOCATION else ""
            if vehicle is None:
                rejection = Rejection(UNKNOWN_DEVICE, "device_id", "device is not in the vehicle registry",
                                      f"terminal {session.phone} left the registry{where}")  # fmt: skip
                pending.append(await self._dead_letter(session, rejection, raw, received_at))
                continue
            try:
                fix = location_to_fix(
                    loc, device_id=session.phone, vehicle_id=vehicle, now=received_at,
                    max_future=self._max_future, max_speed_kmh=self.settings.max_speed_kmh,
                )  # fmt: skip
            except ContractError as exc:
                rejection = Rejection(exc.code, exc.field, exc.reason, f"{exc}{where}")
                pending.append(await self._dead_letter(session, rejection, raw, received_at))
                continue
            pending.append(await self._produce(fix))
        await self._queue(session, _Reply(pending, self._general(session, header, m.RESULT_OK),
                                          counts_as="location_frames"))  # fmt: skip

    # ------------------------------------------------------------------ Kafka and dead letters

    async def _send(self, topic: str, value: bytes, key: bytes) -> Awaitable[object]:
        """Hand one record to the producer; the returned future completes once Kafka acknowledged it.

        While the producer's buffer is full (Kafka slow or away) this waits, and so does the
        reading of this connection: TCP pushes back on the terminal, which keeps its data.
        """
        assert self._producer is not None and self._loop is not None
        loop = self._loop
        acked: asyncio.Future[object] = loop.create_future()
        while True:
            try:
                sent = self._producer.send(topic, value=value, key=key, headers=self._headers)
                break
            except KafkaTimeoutError:
                self.stats["producer_full_waits"] += 1
                await asyncio.sleep(0.05)
        sent.add_callback(lambda metadata: self._completed_in_thread(acked, None))
        sent.add_errback(lambda exc: self._completed_in_thread(acked, exc))
        return acked

    def _completed_in_thread(self, acked: asyncio.Future[object], error: BaseException | None) -> None:
        """Kafka's sender thread reports an acknowledgement: queue it and wake the loop once per batch
        (a wake-up per record would cost a self-pipe write each)."""
        assert self._loop is not None
        self._completions.append((acked, error))
        with self._completions_lock:
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        self._loop.call_soon_threadsafe(self._resolve_completions)

    def _resolve_completions(self) -> None:
        with self._completions_lock:
            self._wake_scheduled = False
        while self._completions:
            _resolve(*self._completions.popleft())

    async def _produce(self, fix: Fix) -> Awaitable[object]:
        self.stats["fixes"] += 1
        return await self._send(self.config.telemetry_topic, fix.to_json(), fix.key)

    async def _dead_letter(
        self, session: _Session, rejection: Rejection, raw: bytes, received_at: datetime
    ) -> Awaitable[object]:
        self.rejected[rejection.code] += 1
        hex_text = raw.hex()
        if len(hex_text) > _HEX_LIMIT:
            hex_text = hex_text[:_HEX_LIMIT] + f"... ({len(raw)} bytes)"
        letter = DeadLetter.of(
            Rejection(
                rejection.code, rejection.field, rejection.reason, f"{rejection.message} [frame {hex_text}]"
            ),
            payload=raw,
            source_topic=session.source,
            received_at=received_at,
            stage=DeadLetterStage.JT808,
            instance=self.config.instance,
        )
        return await self._send(self.config.dlq_topic, letter.to_json(), (session.phone or "").encode())

    async def _reject_raw(self, session: _Session, error: FrameError, raw: bytes) -> None:
        reply = m.RESULT_MESSAGE_ERROR if error.header is not None and error.code in _ANSWERABLE else None
        await self._reject(session, error, raw, reply=reply)

    async def _reject(self, session: _Session, error: FrameError, raw: bytes, *, reply: int | None) -> None:
        rejection = Rejection(error.code, error.field, error.reason, str(error))
        future = await self._dead_letter(session, rejection, raw, datetime.now(UTC))
        frame = self._general(session, error.header, reply) if reply is not None and error.header else None
        await self._queue(session, _Reply([future], frame, counts_as="dead_lettered"))

    async def _expire_parts(self, session: _Session, *, force: bool = False) -> None:
        now = float("inf") if force else time.monotonic()
        for key, parts in session.reassembler.expire(now):
            for raw in parts:
                error = FrameError(INCOMPLETE_PACKAGE, f"part of message 0x{key[0]:04x} whose other parts "
                                   f"never arrived ({len(parts)} of {key[1]} received)")  # fmt: skip
                await self._reject(session, error, raw, reply=None)

    async def _queue(self, session: _Session, reply: _Reply) -> None:
        await session.replies.put(reply)

    def summary(self) -> dict[str, int]:
        out = dict(self.stats)
        out.update({f"rejected: {code}": n for code, n in sorted(self.rejected.items())})
        return out

"""Simulated JT/T 808 terminals: register, authenticate, report, and batch-upload a blind-area backlog.

Each terminal is one asyncio TCP connection speaking the wire format of `ingest.jt808` (the
simulator reuses the gateway's pure codec, nothing else of it). A terminal waits for the
platform's reply to each report, and re-sends it when none comes (the standard's
retransmission), so every fix it reports is acknowledged exactly when the gateway made it
durable. A backlog (fixes the dataset sends long after they were taken) goes out as a
0x0704 blind-area batch after the terminal drops and re-establishes its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from ingest.jt808 import messages as m
from ingest.jt808.codec import (
    Frame,
    FrameError,
    FrameSplitter,
    Header,
    decode_frame,
    encode_frame,
    escape,
    unescape,
)

#: A fix sent this long after it was taken counts as stored while offline (blind area).
BLIND_AFTER_S = 60
#: Items per 0x0704 frame: ~45 bytes each keeps a batch well under the 1023-byte body limit.
BATCH_ITEMS = 16


def phone_for(device_id: str) -> str:
    """A stable 11-digit terminal number for a simulator device id (the registry key over JT/T 808)."""
    digest = int(hashlib.sha1(device_id.encode()).hexdigest(), 16)
    return f"1{digest % 10**10:010d}"


def location_of(fix: dict[str, object]) -> m.Location:
    """The location report a terminal sends for a telemetry fix v1 (as the simulator produces them)."""
    status = (m.STATUS_ACC if fix["acc"] else 0) | (m.STATUS_POSITIONED if fix.get("fix_valid", True) else 0)
    odometer = fix.get("odometer_km")
    sats = fix.get("sats")
    return m.Location(
        alarm=int(fix.get("alarm") or 0),  # type: ignore[call-overload]
        status=status,
        lat=float(fix["lat"]),  # type: ignore[arg-type]
        lon=float(fix["lon"]),  # type: ignore[arg-type]
        alt_m=round(float(fix.get("alt_m") or 0)),  # type: ignore[arg-type]
        speed_kmh=round(float(fix["speed_kmh"]), 1),  # type: ignore[arg-type]
        heading=round(float(fix["heading"])) % 360,  # type: ignore[arg-type]
        time=datetime.fromisoformat(str(fix["ts"])),
        mileage_km=round(float(odometer), 1) if odometer is not None else None,  # type: ignore[arg-type]
        sats=int(sats) if sats is not None else None,  # type: ignore[call-overload]
    )


@dataclass
class TerminalStats:
    reports: int = 0
    batches: int = 0
    batched_fixes: int = 0
    acked_fixes: int = 0
    heartbeats: int = 0
    retransmissions: int = 0
    reconnects: int = 0
    corrupt_sent: int = 0
    corrupt_answered: int = 0
    refused: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, other: TerminalStats) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(other, name)
            if isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)


class TerminalError(RuntimeError):
    pass


class Terminal:
    """One terminal's connection to the gateway. Not thread-safe; one coroutine drives it."""

    def __init__(
        self,
        phone: str,
        plate: str,
        host: str,
        port: int,
        *,
        version: int | None = None,
        reply_timeout_s: float = 10.0,
        retries: int = 3,
    ) -> None:
        self.phone = phone
        self.plate = plate
        self.host, self.port = host, port
        self.version = version
        self.reply_timeout_s = reply_timeout_s
        self.retries = retries
        self.auth_code: str | None = None
        self.stats = TerminalStats()
        self._flow = random.randrange(0x10000)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self._receiver: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ connection

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._receiver = asyncio.create_task(self._receive(self._reader))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._receiver is not None:
            self._receiver.cancel()
        self._writer = self._reader = None
        self._receiver = None

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        splitter = FrameSplitter()
        try:
            while data := await reader.read(4096):
                frames, _ = splitter.feed(data)
                for content in frames:
                    try:
                        frame = decode_frame(content)
                    except FrameError:
                        continue
                    if len(frame.body) >= 2:
                        reply_flow = int.from_bytes(frame.body[:2], "big")
                        waiter = self._waiting.pop(reply_flow, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(frame)
        except (ConnectionError, OSError):
            pass
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("gateway closed the connection"))
        self._waiting.clear()

    def _header(self, msg_id: int) -> Header:
        self._flow = (self._flow + 1) & 0xFFFF
        return Header(msg_id, self.phone, self._flow, version=self.version)

    async def request(self, msg_id: int, body: bytes, *, corrupt: bool = False) -> Frame:
        """Send and wait for the reply naming this flow number; re-send on timeout (same flow)."""
        header = self._header(msg_id)
        wire = encode_frame(header, body)
        if corrupt:
            plain = bytearray(unescape(wire[1:-1]))
            plain[-1] ^= 0x5A  # a wrong check code, as a noisy line would produce
            wire = b"\x7e" + escape(bytes(plain)) + b"\x7e"
        for attempt in range(self.retries + 1):
            if self._writer is None:
                raise TerminalError("not connected")
            waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self._waiting[header.flow] = waiter
            self._writer.write(wire)
            try:
                return await asyncio.wait_for(waiter, timeout=self.reply_timeout_s * (attempt + 1))
            except TimeoutError:
                self.stats.retransmissions += 1
        raise TerminalError(f"no reply to 0x{msg_id:04x} flow {header.flow} after {self.retries} re-sends")

    # ------------------------------------------------------------------ messages

    async def register(self) -> str:
        reg = m.Registration(32, 100, "FLTWT", "SIM-808", self.phone[-7:], 1, self.plate)
        reply = await self.request(m.REGISTER, m.encode_registration(reg, version=self.version))
        _, result, code = m.decode_register_response(reply.body)
        if result != m.REGISTER_OK:
            raise TerminalError(f"registration of {self.phone} refused: result {result}")
        self.auth_code = code
        return code

    async def authenticate(self) -> None:
        if self.auth_code is None:
            await self.register()
        assert self.auth_code is not None
        auth = m.Authentication(self.auth_code, imei="86" + self.phone.zfill(13), software_version="sim-1")
        reply = await self.request(m.AUTHENTICATE, m.encode_authentication(auth, version=self.version))
        if m.decode_general_response(reply.body)[2] != m.RESULT_OK:
            raise TerminalError(f"authentication of {self.phone} refused")

    async def start_session(self) -> None:
        """Connect and authenticate; registers first only when it holds no auth code (as terminals do)."""
        await self.connect()
        await self.authenticate()

    async def heartbeat(self) -> None:
        await self.request(m.HEARTBEAT, b"")
        self.stats.heartbeats += 1

    async def _expect_ok(self, msg_id: int, body: bytes, fixes: int) -> None:
        started = time.monotonic()
        reply = await self.request(msg_id, body)
        result = m.decode_general_response(reply.body)[2]
        if result != m.RESULT_OK:
            self.stats.refused += fixes
            raise TerminalError(f"0x{msg_id:04x} answered with result {result}")
        self.stats.acked_fixes += fixes
        self.stats.latencies_s.append(time.monotonic() - started)

    async def report(self, loc: m.Location) -> None:
        self.stats.reports += 1
        await self._expect_ok(m.LOCATION, m.encode_location(loc), 1)

    async def batch(self, locs: list[m.Location], *, blind_area: bool) -> None:
        self.stats.batches += 1
        self.stats.batched_fixes += len(locs)
        await self._expect_ok(m.BATCH_LOCATION, m.encode_batch(locs, blind_area=blind_area), len(locs))

    async def send_corrupt(self, loc: m.Location) -> None:
        """A report with a wrong check code: the gateway must dead-letter it and answer 'message error'."""
        self.stats.corrupt_sent += 1
        reply = await self.request(m.LOCATION, m.encode_location(loc), corrupt=True)
        if m.decode_general_response(reply.body)[2] == m.RESULT_MESSAGE_ERROR:
            self.stats.corrupt_answered += 1


# ------------------------------------------------------------------ driving a dataset


@dataclass(frozen=True, slots=True)
class Step:
    """What a terminal does next: report one fix, upload a blind-area batch, or send a corrupt frame."""

    kind: str  # report | blind_batch | corrupt
    locations: tuple[m.Location, ...]


def plan(messages: Iterable[tuple[float, int, str, bytes]]) -> list[Step]:
    """Turn one device's (emit, t, kind, payload) stream into terminal steps, in send order.

    Fixes sent more than `BLIND_AFTER_S` after they were taken are grouped into 0x0704
    blind-area batches; duplicates become re-sent reports (as after a lost reply); malformed
    messages become reports with a corrupted check code (payloads that are not fixes at all
    cannot be expressed in JT/T 808).
    """
    steps: list[Step] = []
    backlog: list[m.Location] = []

    def flush() -> None:
        for i in range(0, len(backlog), BATCH_ITEMS):
            steps.append(Step("blind_batch", tuple(backlog[i : i + BATCH_ITEMS])))
        backlog.clear()

    last: m.Location | None = None
    for emit, t, kind, payload in messages:
        if kind == "malformed":
            if last is not None:
                steps.append(Step("corrupt", (last,)))
            continue
        loc = location_of(orjson.loads(payload))
        last = loc
        if emit - t > BLIND_AFTER_S:
            backlog.append(loc)
            continue
        flush()
        steps.append(Step("report", (loc,)))
    flush()
    return steps


async def run_terminal(
    terminal: Terminal, steps: list[Step], on_step: Callable[[int], None] | None = None
) -> TerminalStats:
    """Drive one terminal through its steps; reconnects (and re-sends the step) when the link drops."""
    await terminal.start_session()
    previous = "report"
    try:
        for step in steps:
            for attempt in range(5):
                try:
                    if step.kind == "blind_batch" and previous != "blind_batch" and attempt == 0:
                        # Back from the blind area: a new connection, auth code kept, then the backlog.
                        await terminal.close()
                        terminal.stats.reconnects += 1
                        await terminal.start_session()
                    if step.kind == "report":
                        await terminal.report(step.locations[0])
                    elif step.kind == "corrupt":
                        await terminal.send_corrupt(step.locations[0])
                    else:
                        await terminal.batch(list(step.locations), blind_area=True)
                    break
                except (ConnectionError, OSError, TerminalError):
                    if attempt == 4:
                        raise
                    await terminal.close()
                    terminal.stats.reconnects += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
                    await terminal.start_session()
            previous = step.kind
            if on_step is not None:
                on_step(len(step.locations))
    finally:
        await terminal.close()
    return terminal.stats

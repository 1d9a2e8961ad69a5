"""Test-side tools for the gateway: an in-process gateway on a private port and a raw terminal socket."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pydantic import SecretStr

from fleetwatch import topics
from fleetwatch.kafka_io import read_topic
from fleetwatch.records import DeadLetter, Fix, parse_dead_letter, parse_fix
from fleetwatch.settings import Settings
from ingest.jt808.codec import Frame, FrameSplitter, Header, decode_frame, encode_frame
from ingest.jt808.server import Gateway
from ingest.registry import RegistryCache, RegistryTable
from tests.ports import free_port
from tests.registry.helpers import register_test_devices


def new_phone() -> str:
    return f"1{random.randrange(10**10):010d}"


def register_terminals(settings: Settings, rows: dict[str, str]) -> RegistryCache:
    """Register terminal number -> plate through the product path; the cache the gateway will read."""
    register_test_devices(settings, [(phone, plate, None) for phone, plate in rows.items()])
    return RegistryCache(settings, "jt808")


def gateway_settings(stack: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jt808_host": "127.0.0.1",
        "jt808_port": free_port(),
        "jt808_auth_secret": SecretStr("test-secret"),
        "jt808_frames_per_s": 1000.0,
        "jt808_burst_frames": 1000,
    }
    values.update(overrides)
    return stack.model_copy(update=values)


@asynccontextmanager
async def running_gateway(settings: Settings, registry: RegistryTable) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings, registry=registry)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


class RawTerminal:
    """A bare TCP connection: send any bytes, read the gateway's frames (decoded) with a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._splitter = FrameSplitter()
        self._ready: list[Frame] = []

    @classmethod
    async def open(cls, port: int) -> RawTerminal:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, wire: bytes) -> None:
        self.writer.write(wire)

    def send_message(
        self, msg_id: int, phone: str, flow: int, body: bytes, version: int | None = None
    ) -> None:
        self.send(encode_frame(Header(msg_id, phone, flow, version=version), body))

    async def next_frame(self, timeout_s: float = 10.0) -> Frame | None:
        """The next frame from the gateway; None if the connection closed or nothing came in time."""
        while not self._ready:
            try:
                data = await asyncio.wait_for(self.reader.read(4096), timeout_s)
            except TimeoutError:
                return None
            if not data:
                return None
            frames, _ = self._splitter.feed(data)
            self._ready += [decode_frame(c) for c in frames]
        return self._ready.pop(0)

    async def closed_by_peer(self, timeout_s: float) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(4096), timeout_s)
        except TimeoutError:
            return False
        return data == b""

    def close(self) -> None:
        self.writer.close()


def fixes_since(settings: Settings, since: dict[int, int], device_ids: set[str]) -> list[Fix]:
    fixes = []
    for record in read_topic(settings, topics.TELEMETRY, since=since):
        obj = orjson.loads(record.value)
        if obj.get("device_id") in device_ids:
            fixes.append(parse_fix(record.value, now=None))
    return fixes


def letters_since(settings: Settings, since: dict[int, int], source_prefix: str) -> list[DeadLetter]:
    letters = [parse_dead_letter(r.value) for r in read_topic(settings, topics.TELEMETRY_DLQ, since=since)]
    return [d for d in letters if d.source_topic.startswith(source_prefix)]

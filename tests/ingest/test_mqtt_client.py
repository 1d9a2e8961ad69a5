"""The bridge's MQTT socket handling: a disconnect we ask for lets the broker read all we sent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ingest.mqtt_client import close_gracefully

LAST_ACKS = b"\x40\x02\x00\x07" * 250 + b"\xe0\x00"  # PUBACKs, then DISCONNECT


@contextmanager
def connected_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, broker side) of a real loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    with client, peer:
        yield client, peer


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_broker_writing_while_we_disconnect_still_reads_everything_we_sent() -> None:
    """The broker keeps sending (refilling Receive Maximum) before it reads our last PUBACKs; a
    plain close() answers those bytes with a reset and its next write fails before it reads them."""
    with connected_pair() as (client, broker):
        received: list[bytes] = []
        errors: list[BaseException] = []

        def broker_side() -> None:
            try:
                for _ in range(3):
                    time.sleep(0.1)  # the client is already closing
                    broker.sendall(b"\x30" * 4096)  # queued PUBLISHes
                received.append(read_to_eof(broker))
            except OSError as exc:
                errors.append(exc)
            finally:
                broker.close()  # what Mosquitto does after reading DISCONNECT

        thread = threading.Thread(target=broker_side)
        thread.start()
        client.sendall(LAST_ACKS)
        close_gracefully(client, timeout_s=10.0)
        thread.join(15)
        assert not errors, f"the broker's side was reset: {errors}"
        assert received == [LAST_ACKS]


def test_a_broker_that_never_closes_still_gets_our_fin_and_we_stop_waiting() -> None:
    with connected_pair() as (client, broker):
        client.sendall(LAST_ACKS)
        close_gracefully(client, timeout_s=0.3)  # returns although the broker keeps its side open
        broker.settimeout(10)
        assert read_to_eof(broker) == LAST_ACKS

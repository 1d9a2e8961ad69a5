"""The bridge's paho client: the same protocol handling, with the socket read in large chunks and
closed only once the broker has read everything sent before DISCONNECT."""

from __future__ import annotations

import select
import socket
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, _ConnectionState

_CHUNK = 256 * 1024
#: Longest a disconnect we asked for waits for the broker to close its side.
_CLOSE_WAIT_S = 5.0


class BufferedClient(mqtt.Client):
    """paho 2 reads every packet with three or more ``recv()`` calls (type byte, each length byte,
    body) after a ``select()`` of its own; draining a backlog that is a few syscalls per fix.
    This reads whatever the socket has (up to 256 KiB) once and serves paho's small reads from
    it, and keeps parsing while buffered bytes remain (``select()`` cannot see them).

    After our DISCONNECT it closes the connection gracefully (`close_gracefully`) instead of
    paho's plain ``close()``, which can cost the broker our last PUBACKs.

    Relies on paho 2's internal ``_sock_recv`` / ``loop_read`` / ``_sock_close`` / ``_state``; the
    bridge's integration tests run through it.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rx = b""
        self._rx_pos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rx_pos >= len(self._rx):
            self._rx = super()._sock_recv(_CHUNK)  # BlockingIOError when there is nothing
            self._rx_pos = 0
            if not self._rx:
                return self._rx  # connection closed: paho handles the empty read
        start = self._rx_pos
        self._rx_pos = min(start + bufsize, len(self._rx))
        return self._rx[start : self._rx_pos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _buffered(self) -> bool:
        return self._rx_pos < len(self._rx)

    def _sock_close(self) -> None:
        # paho closes right after writing DISCONNECT (state still "disconnecting"), or after an
        # error while disconnecting; either way nothing more is read from this connection.
        if self._state == _ConnectionState.MQTT_CS_DISCONNECTING and isinstance(self._sock, socket.socket):
            close_gracefully(self._sock, _CLOSE_WAIT_S)
        self._rx, self._rx_pos = b"", 0  # bytes of a dead connection must not reach the next one
        super()._sock_close()


def close_gracefully(sock: socket.socket, timeout_s: float) -> None:
    """Half-close ``sock`` and discard what still arrives until the peer closes too (or ``timeout_s``).

    Why not just ``close()``: the broker keeps sending while it works through our last PUBACKs
    (each one frees a Receive Maximum slot that it refills with a queued message). Bytes reaching
    a closed socket make our kernel answer with a reset; Mosquitto 2.0.11's next write to us then
    fails ("disconnected: Broken pipe" in its log) and it drops the connection without reading
    the PUBACKs and DISCONNECT still in its receive buffer. Those messages stay unacknowledged in
    our persistent session and are redelivered on the next connect: duplicates in Kafka. After
    ``shutdown(SHUT_WR)`` the broker reads everything up to our FIN and closes; what it sent
    meanwhile was never acknowledged, so it stays queued for the next session.
    """
    deadline = time.monotonic() + timeout_s
    try:
        sock.shutdown(socket.SHUT_WR)  # FIN goes after the bytes already written
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                return  # the broker did not close in time: close anyway
            try:
                if not sock.recv(_CHUNK):
                    return  # the broker closed: it has read all we sent
            except BlockingIOError:
                continue
    except OSError:
        return  # already reset or closed: nothing more to wait for

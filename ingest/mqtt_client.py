"""The bridge's paho client: the same protocol handling, with the socket read in large chunks."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_CHUNK = 256 * 1024


class BufferedClient(mqtt.Client):
    """paho 2 reads every packet with three or more ``recv()`` calls (type byte, each length byte,
    body) after a ``select()`` of its own; draining a backlog that is a few syscalls per fix.
    This reads whatever the socket has (up to 256 KiB) once and serves paho's small reads from
    it, and keeps parsing while buffered bytes remain (``select()`` cannot see them).

    Relies on paho 2's internal ``_sock_recv`` / ``loop_read`` / ``_sock_close``; the bridge's
    integration tests run through it.
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
        self._rx, self._rx_pos = b"", 0  # bytes of a dead connection must not reach the next one
        super()._sock_close()

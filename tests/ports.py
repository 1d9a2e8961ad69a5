"""Free TCP ports for tests that start a private service next to the shared stack."""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A free port BELOW Linux's ephemeral range (32768+): a port from bind(0) can be taken again by
    any client's outgoing connection before the service binds it (seen under parallel test load)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports

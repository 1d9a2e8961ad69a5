"""Ordered acknowledgement window: acks in receive order, never across connections."""

from __future__ import annotations

import threading

from ingest.inflight import InFlightWindow


def test_acks_wait_for_earlier_messages_and_go_out_in_receive_order() -> None:
    window = InFlightWindow()
    acked: list[int] = []
    tickets = [window.add(mid, 1) for mid in (11, 12, 13)]
    assert window.complete(tickets[2], lambda mid, qos: acked.append(mid)) == 0
    assert window.complete(tickets[1], lambda mid, qos: acked.append(mid)) == 0
    assert acked == [] and len(window) == 3
    assert window.complete(tickets[0], lambda mid, qos: acked.append(mid)) == 3
    assert acked == [11, 12, 13]
    assert len(window) == 0 and window.acked == 3


def test_qos0_messages_hold_their_place_but_send_no_ack() -> None:
    window = InFlightWindow()
    acked: list[tuple[int, int]] = []
    t0 = window.add(0, 0)
    t1 = window.add(5, 1)
    window.complete(t1, lambda mid, qos: acked.append((mid, qos)))
    assert acked == []
    window.complete(t0, lambda mid, qos: acked.append((mid, qos)))
    assert acked == [(5, 1)]


def test_completion_from_a_dropped_connection_is_never_acked() -> None:
    window = InFlightWindow()
    acked: list[int] = []
    old = window.add(7, 1)
    assert window.new_generation() == 1
    # The broker redelivers mid 7 on the new connection; the old completion must not ack it.
    new = window.add(7, 1)
    assert window.complete(old, lambda mid, qos: acked.append(mid)) == 0
    assert acked == [] and len(window) == 1
    assert window.complete(new, lambda mid, qos: acked.append(mid)) == 1
    assert acked == [7]
    assert window.abandoned == 1


def test_wait_empty_returns_when_another_thread_completes() -> None:
    window = InFlightWindow()
    ticket = window.add(1, 1)
    assert window.wait_empty(0.05) is False
    timer = threading.Timer(0.05, window.complete, args=(ticket, lambda mid, qos: None))
    timer.start()
    assert window.wait_empty(5) is True
    timer.join()

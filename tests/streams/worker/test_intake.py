"""The worker's batch intake without a broker: the queue's batching, faust's flow control over
it, and which fetched records the worker takes on (the consumer loop itself runs in the
integration tests: equivalence, kill -9, workers joining)."""

from __future__ import annotations

import asyncio
import time

from faust.types import Message

from streams.worker.intake import Intake, IntakeApp, IntakeConsumer, take_on


def _app() -> IntakeApp:
    app = IntakeApp("test-intake", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.intake = Intake(app, ["telemetry"])
    return app


def _message(offset: int, generation: int) -> Message:
    return Message("telemetry", 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation)


def test_take_joins_queued_fetches_up_to_the_batch_size_and_never_splits_one() -> None:
    async def run() -> list[list[int]]:
        app = _app()
        app.flow_control.resume()
        for fetch in ([1, 2], [3], [4, 5, 6], [7]):
            await app.intake.queue.put([_message(o, 0) for o in fetch])
        return [[m.offset for m in await app.intake.take(3)] for _ in range(3)]

    assert asyncio.run(run()) == [[1, 2, 3], [4, 5, 6], [7]]


def test_a_rebalance_drops_queued_fetches_and_holds_new_ones_until_flow_resumes() -> None:
    async def run() -> tuple[bool, bool, bool]:
        app = _app()
        queue = app.intake.queue
        app.flow_control.resume()
        await queue.put([_message(1, 0)])
        # what faust does when partitions are revoked: suspend the flow, clear the queues
        app.flow_control.suspend()
        app.flow_control.clear()
        dropped = queue.empty()
        put = asyncio.ensure_future(queue.put([_message(2, 1)]))
        await asyncio.sleep(0.05)
        held = not put.done() and queue.empty()
        app.flow_control.resume()
        await asyncio.wait_for(put, 1.0)
        return dropped, held, [m.offset for m in await app.intake.take(10)] == [2]

    assert asyncio.run(run()) == (True, True, True)


def test_records_are_taken_on_in_offset_order_of_the_current_generation_once() -> None:
    async def run() -> tuple[list[int], list[int], list[int], int]:
        app = _app()
        assert isinstance(app.consumer, IntakeConsumer)
        app.consumer_generation_id = 3
        # offset 0 was fetched before the rebalance: it is read again from the committed offset
        first = await take_on(app, [_message(0, 2), _message(1, 3), _message(2, 3)])
        # a re-read of 1..2 after a seek, then 3: only 3 is new
        again = await take_on(app, [_message(1, 3), _message(2, 3), _message(3, 3)])
        # the partition was sought back to 4; records after the hole fetched before the seek
        # took effect are left out until 4 comes
        tp = _message(0, 3).tp
        app.intake.rereading[tp] = (4, time.monotonic() + 60)
        late = await take_on(app, [_message(6, 3), _message(7, 3)])
        late += await take_on(app, [_message(4, 3), _message(5, 3)])
        return [m.offset for m in first], [m.offset for m in again], [m.offset for m in late], len(
            app.consumer.unacked
        )

    assert asyncio.run(run()) == ([1, 2], [3], [4, 5], 5)

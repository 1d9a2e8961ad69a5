"""The worker's ownership lease (streams/worker/membership.py), driven without a broker: a stand-in
for aiokafka's group coordinator with the two things the lease reads (its generation and its
heartbeat). The real thing is tests/streams/worker/test_rebalance_integration.py."""

from __future__ import annotations

import asyncio

from streams.worker.membership import Membership, Standing


class _Coordinator:
    def __init__(self) -> None:
        self.generation = 7
        self.answers = True

    async def _do_heartbeat(self) -> bool:
        await asyncio.sleep(0)
        return self.answers


def test_owned_while_heartbeats_are_answered_within_the_lease() -> None:
    async def body() -> None:
        member, coordinator = Membership(session_timeout_s=0.4), _Coordinator()
        member.assigned(coordinator)
        assert member.standing() is Standing.DOUBTFUL  # no heartbeat answered yet
        assert await coordinator._do_heartbeat()
        assert member.standing() is Standing.OWNED
        await asyncio.sleep(0.25)  # past the lease (half the session timeout)
        assert member.standing() is Standing.DOUBTFUL
        coordinator.answers = False
        await coordinator._do_heartbeat()
        assert member.standing() is Standing.DOUBTFUL  # an unanswered beat renews nothing

    asyncio.run(body())


def test_lost_once_the_consumer_leaves_the_generation() -> None:
    async def body() -> None:
        member, coordinator = Membership(session_timeout_s=10), _Coordinator()
        member.assigned(coordinator)
        await coordinator._do_heartbeat()
        coordinator.generation = -1  # aiokafka resets it when the group no longer knows the member
        assert member.standing() is Standing.LOST
        coordinator.generation = 8
        member.assigned(coordinator)  # a new assignment: owned again (the lease still runs)
        assert member.standing() is Standing.OWNED

    asyncio.run(body())


def test_settled_waits_while_doubtful_until_a_heartbeat_decides() -> None:
    async def body() -> None:
        member, coordinator = Membership(session_timeout_s=10), _Coordinator()
        member.assigned(coordinator)

        async def answer_later() -> None:
            await asyncio.sleep(0.2)
            await coordinator._do_heartbeat()

        task = asyncio.create_task(answer_later())
        assert await member.settled(poll_s=0.01) is Standing.OWNED
        await task
        coordinator.generation = 9
        assert await member.settled() is Standing.LOST

    asyncio.run(body())

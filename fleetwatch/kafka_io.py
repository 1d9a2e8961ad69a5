"""Kafka client helpers with fleetwatch's safety defaults (producer, consumer, admin, whole-topic reads).

Every client authenticates as a role (fleetwatch/kafka_auth.py); ``admin`` is the tooling default,
services name their own role.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as _codec
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from fleetwatch.kafka_auth import client_security
from fleetwatch.settings import KafkaRole, Settings

__all__ = [
    "ConsumerRecord",
    "best_compression",
    "create_topic",
    "delete_topic",
    "end_offsets",
    "make_admin",
    "make_consumer",
    "make_producer",
    "read_topic",
]


def best_compression() -> str:
    """The cheapest good codec the installed libraries support: lz4, then zstd, else gzip."""
    if _codec.has_lz4():
        return "lz4"
    if _codec.has_zstd():
        return "zstd"
    return "gzip"


def make_producer(
    settings: Settings, *, client_id: str, role: KafkaRole = "admin", **overrides: Any
) -> KafkaProducer:
    """A producer that only reports success once every in-sync replica has the record.

    ``acks='all'`` + idempotence means a retried batch is never written twice and never
    reordered within a partition; retries are unbounded inside ``delivery_timeout_ms`` so a
    short broker outage is absorbed by the client, and a longer one surfaces as a failed
    future that the caller must handle (the bridge re-sends it).
    """
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": best_compression(),
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "max_in_flight_requests_per_connection": 5,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 15_000,
        # send() blocks the caller at most this long waiting for metadata or buffer space.
        "max_block_ms": 10_000,
        "reconnect_backoff_max_ms": 2_000,
        **client_security(settings, role),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    settings: Settings,
    *,
    group_id: str | None,
    topics: tuple[str, ...] = (),
    role: KafkaRole = "admin",
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer that never commits on its own: callers commit after their side effect is durable."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        **client_security(settings, role),
    }
    config.update(overrides)
    return KafkaConsumer(*topics, **config)


def make_admin(settings: Settings, *, client_id: str = "fleetwatch-admin", role: KafkaRole = "admin",
               **overrides: Any) -> KafkaAdminClient:
    """An admin client (topics, ACLs, SCRAM users): ``admin`` is a super user, other roles are not."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": client_id,
        **client_security(settings, role),
    }
    config.update(overrides)
    return KafkaAdminClient(**config)


def _partitions(consumer: KafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise UnknownTopicOrPartitionError(f"topic {topic!r} has no partitions (does it exist?)")
        time.sleep(0.2)


def end_offsets(
    settings: Settings, topic: str, timeout_s: float = 10.0, *, role: KafkaRole = "admin"
) -> dict[int, int]:
    """Current end offset of every partition of ``topic`` (partition -> offset)."""
    consumer = make_consumer(settings, group_id=None, role=role)
    try:
        parts = _partitions(consumer, topic, timeout_s)
        return {tp.partition: off for tp, off in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def read_topic(
    settings: Settings,
    topic: str,
    *,
    since: dict[int, int] | None = None,
    timeout_s: float = 30.0,
    role: KafkaRole = "admin",
) -> Iterator[ConsumerRecord]:
    """Every record of ``topic`` from the beginning (or the offsets ``since``, partition -> offset,
    e.g. an earlier `end_offsets`) up to the end offsets seen at call time.

    No consumer group, no commits: for audits, tests and tools that need a whole snapshot.
    Within a partition records come in offset order.
    """
    consumer = make_consumer(settings, group_id=None, role=role, consumer_timeout_ms=1000)
    try:
        parts = _partitions(consumer, topic, timeout_s)
        ends = consumer.end_offsets(parts)
        starts = {tp: (since or {}).get(tp.partition, 0) for tp in parts}
        todo = {tp: end for tp, end in ends.items() if end > starts[tp]}
        if not todo:
            return
        consumer.assign(list(todo))
        for tp in todo:
            if starts[tp] > 0:
                consumer.seek(tp, starts[tp])
            else:
                consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"reading {topic!r}: partitions {sorted(tp.partition for tp in todo)} "
                    f"did not reach their end offsets within {timeout_s:g} s"
                )
            batches = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                end = todo.get(tp)
                if end is None:
                    continue
                for record in records:
                    if record.offset >= end:
                        break
                    yield record
                if consumer.position(tp) >= end:
                    del todo[tp]
                    consumer.pause(tp)
            for tp in [tp for tp, end in todo.items() if consumer.position(tp) >= end]:
                del todo[tp]
    finally:
        consumer.close()


def create_topic(settings: Settings, name: str, partitions: int = 1, **configs: str) -> bool:
    """Create ``name`` if missing; True if this call created it."""
    admin = make_admin(settings)
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()


def delete_topic(settings: Settings, name: str) -> None:
    """Delete ``name``; a missing topic is not an error."""
    admin = make_admin(settings)
    try:
        admin.delete_topics([name])
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()

"""The bridge's caching partitioner maps keys exactly as Kafka's default one does."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner

from ingest.bridge import KeyCachingPartitioner


class Partitions:
    """The two questions a partitioner asks of cluster metadata."""

    def __init__(self, count: int) -> None:
        self.count = count

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))


def test_same_partition_as_the_default_and_follows_a_partition_increase() -> None:
    cached, default = KeyCachingPartitioner(max_keys=50), DefaultPartitioner()
    for count in (6, 6, 12):  # the second pass is served from the cache
        cluster = Partitions(count)
        for i in range(200):
            key = f"苏A{i:05d}".encode()
            assert cached.partition("t", None, key, None, None, cluster) == default.partition(
                "t", None, key, None, None, cluster
            )

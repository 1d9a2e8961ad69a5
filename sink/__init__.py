"""Kafka -> TimescaleDB: one small sink per topic behind `TableSink`, run by one batching loop."""

from sink.base import Row, StagedSink, TableSink
from sink.registry import SINKS, make_sinks
from sink.runner import SinkRunner, SinkStats

__all__ = ["SINKS", "Row", "SinkRunner", "SinkStats", "StagedSink", "TableSink", "make_sinks"]

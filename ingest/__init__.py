"""MQTT -> Kafka ingest bridge: at-least-once delivery with a dead-letter path."""

from fleetwatch.records import DeadLetter, Rejection, parse_dead_letter
from ingest.bridge import SHARE_GROUP, Bridge, BridgeConfig
from ingest.inflight import InFlightWindow, Ticket
from ingest.metrics import Metrics
from ingest.registry import RegistryCache, RegistryTable
from ingest.validate import check_fix

__all__ = [
    "SHARE_GROUP",
    "Bridge",
    "BridgeConfig",
    "DeadLetter",
    "InFlightWindow",
    "Metrics",
    "RegistryCache",
    "RegistryTable",
    "Rejection",
    "Ticket",
    "check_fix",
    "parse_dead_letter",
]

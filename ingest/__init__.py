"""MQTT -> Kafka ingest bridge: at-least-once delivery with a dead-letter path."""

"""How an MQTT client reaches the broker: plain loopback port or TLS port with the configured CA."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from fleetwatch.settings import Settings


def mqtt_address(settings: Settings) -> tuple[str, int]:
    """(host, port) this process's MQTT clients connect to."""
    return settings.mqtt_host, settings.mqtt_tls_port if settings.mqtt_tls else settings.mqtt_port


def configure_tls(client: mqtt.Client, settings: Settings) -> None:
    """Turn on TLS (server certificate and host name verified against ``mqtt_ca_file``) when
    ``mqtt_tls`` is set; a plain connection otherwise."""
    if not settings.mqtt_tls:
        return
    context = ssl.create_default_context(cafile=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    client.tls_set_context(context)

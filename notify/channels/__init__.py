"""The channels behind one small interface; adding one is its module plus one line in `CHANNELS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fleetwatch.settings import Settings
from notify.config import ChannelSpec, Route
from notify.message import Notice


class DeliveryError(RuntimeError):
    """The receiver did not take the message (its status or answer says why); worth retrying."""


class Channel(Protocol):
    spec: ChannelSpec

    def send(self, notice: Notice, route: Route) -> None:
        """Deliver or raise `DeliveryError` (or an OSError) with the reason."""

    def close(self) -> None: ...


def _factories() -> dict[str, Callable[[ChannelSpec, Settings], Channel]]:
    from notify.channels.dingtalk import DingTalkChannel
    from notify.channels.email import EmailChannel
    from notify.channels.mqtt import MqttChannel
    from notify.channels.webhook import WebhookChannel
    from notify.channels.wecom import WeComChannel

    return {
        "webhook": WebhookChannel,
        "dingtalk": DingTalkChannel,
        "wecom": WeComChannel,
        "email": EmailChannel,
        "mqtt": MqttChannel,
    }


def build_channel(spec: ChannelSpec, settings: Settings) -> Channel:
    return _factories()[spec.type](spec, settings)

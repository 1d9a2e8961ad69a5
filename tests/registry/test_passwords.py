"""Generated device passwords: per device, per installation key, stable, never in a repr (no services)."""

from __future__ import annotations

import re

from pydantic import SecretStr

from fleetwatch.settings import Settings
from registry import Registered, device_password


def test_generated_password_is_per_device_per_key_and_stable() -> None:
    one, other = (
        Settings(device_secret_key=SecretStr("key-1")),
        Settings(device_secret_key=SecretStr("key-2")),
    )
    password = device_password(one, "dev-1")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
    assert device_password(one, "dev-1") == password  # re-running `devices add` keeps it
    assert device_password(one, "dev-2") != password
    assert device_password(other, "dev-1") != password  # another installation, another password


def test_registered_keeps_credentials_out_of_its_repr() -> None:
    done = Registered(0, 1, 1, [("dev-1", "s3cret-password")], frozenset({"dev-1"}))
    assert "s3cret" not in repr(done) and "s3cret" not in str(done)

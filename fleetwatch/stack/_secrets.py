"""Service-account passwords: generated once into <stack_dir>/secrets/<name> (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fleetwatch.kafka_auth import password_secret
from fleetwatch.settings import KAFKA_ROLES, Settings

SECRET_NAMES: tuple[str, ...] = (
    "mqtt_bridge_password",
    "mqtt_notifier_password",
    "mqtt_admin_password",
    "pg_password",
    "pg_sink_password",
    "pg_dashboards_password",
    "jt808_auth_secret",
    "device_secret_key",
    *(password_secret(role) for role in (*KAFKA_ROLES, "broker")),
)


def secrets_dir(settings: Settings) -> Path:
    return settings.stack_dir.resolve() / "secrets"


def ensure_secrets(settings: Settings) -> dict[str, str]:
    """Create missing secret files; return every secret (environment values win, as in Settings)."""
    directory = secrets_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in SECRET_NAMES:
        path = directory / name
        if not path.exists():
            # URL-safe alphabet: no quoting trouble in libpq conninfo or mosquitto files.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24) + "\n")
        os.chmod(path, 0o600)
    return {name: settings.secret(name) for name in SECRET_NAMES}

"""Connections to the product database as its owner, the sink's writer or the dashboards' reader."""

from __future__ import annotations

from typing import Literal

import psycopg

from fleetwatch.settings import Settings

Login = Literal["owner", "sink", "dashboards"]


def credentials(settings: Settings, login: Login) -> tuple[str, str]:
    """(user, password) of one of the database's logins."""
    if login == "owner":
        return settings.pg_user, settings.secret("pg_password")
    if login == "sink":
        return settings.pg_sink_user, settings.secret("pg_sink_password")
    return settings.pg_dashboards_user, settings.secret("pg_dashboards_password")


def connect(
    settings: Settings, login: Login = "owner", *, autocommit: bool = False, connect_timeout: int = 5
) -> psycopg.Connection[tuple[object, ...]]:
    user, password = credentials(settings, login)
    return psycopg.connect(
        settings.pg_conninfo_for(user),
        password=password,
        autocommit=autocommit,
        connect_timeout=connect_timeout,
        application_name=f"fleetwatch-{login}",
    )

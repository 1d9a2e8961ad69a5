"""Login roles: the sink's writer, the dashboards' reader, and per-city / per-unit scoped accounts."""

from __future__ import annotations

import psycopg
from psycopg import sql

from fleetwatch.settings import Settings

#: Group role of each kind of login (created by migration 0001).
WRITER, READER, SCOPED = "fw_writer", "fw_reader", "fw_scoped"


def _ensure_login(conn: psycopg.Connection[tuple[object, ...]], user: str, password: str, group: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    # DDL takes no parameters, so the password travels as a literal (never logged by us). INHERIT:
    # the group's privileges and policies apply to the login without SET ROLE.
    conn.execute(
        sql.SQL(verb + " ROLE {} WITH LOGIN INHERIT PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)
        )
    )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(user)))


def ensure_service_logins(conn: psycopg.Connection[tuple[object, ...]], settings: Settings) -> list[str]:
    """Create or update the sink and dashboards logins with their passwords from the settings' secrets."""
    logins = [
        (settings.pg_sink_user, settings.secret("pg_sink_password"), WRITER),
        (settings.pg_dashboards_user, settings.secret("pg_dashboards_password"), READER),
    ]
    with conn.transaction():
        for user, password, group in logins:
            _ensure_login(conn, user, password, group)
    return [user for user, _, _ in logins]


class AccountError(ValueError):
    """A scoped account that cannot be created as asked (unknown org, name taken by a service...)."""


def add_org_account(
    conn: psycopg.Connection[tuple[object, ...]], role_name: str, org_id: str, password: str | None
) -> None:
    """A read-only login (or, without a password, a NOLOGIN group) that sees only ``org_id``'s subtree."""
    with conn.transaction():
        if conn.execute("SELECT 1 FROM orgs WHERE org_id = %s", (org_id,)).fetchone() is None:
            raise AccountError(f"org {org_id!r} is not in the registry (orgs table)")
        taken = conn.execute(
            "SELECT 1 FROM pg_roles r WHERE r.rolname = %s AND (r.rolsuper OR EXISTS ("
            " SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " WHERE m.member = r.oid AND g.rolname IN (%s, %s)))",
            (role_name, WRITER, READER),
        ).fetchone()
        if taken or role_name in (WRITER, READER, SCOPED):
            raise AccountError(f"role {role_name!r} is a service or group role, not an org account")
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name,)).fetchone()
        ident = sql.Identifier(role_name)
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(SCOPED), ident))
        conn.execute(
            "INSERT INTO org_accounts (role_name, org_id) VALUES (%s, %s) "
            "ON CONFLICT (role_name) DO UPDATE SET org_id = EXCLUDED.org_id",
            (role_name, org_id),
        )


def list_org_accounts(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str, bool]]:
    """(role, org, can log in) of every scoped account."""
    rows = conn.execute(
        "SELECT a.role_name, a.org_id, coalesce(r.rolcanlogin, false) FROM org_accounts a "
        "LEFT JOIN pg_roles r ON r.rolname = a.role_name ORDER BY a.org_id, a.role_name"
    ).fetchall()
    conn.commit()
    return [(str(r), str(o), bool(c)) for r, o, c in rows]

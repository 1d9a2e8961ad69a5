"""PostgreSQL 15 + TimescaleDB: a project-owned cluster in <stack_dir>/pg, never the machine's default."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from fleetwatch.settings import Settings

from ._common import (
    ServiceStatus,
    StackError,
    apt_install,
    apt_update,
    check_traversable,
    chown_to,
    cmdline,
    is_root,
    pid_alive,
    port_open,
    render_template,
    run,
    wait_until,
    write_if_changed,
)

SERVICE = "postgres"
PG_MAJOR = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PACKAGES = (f"postgresql-{PG_MAJOR}", f"postgresql-client-{PG_MAJOR}")
_OS_USER = "postgres"

# Bookworm has no postgresql-15-timescaledb: build trixie's Debian source package (DESIGN §6).
TS_SUITE = "trixie"
TS_BUILD_DEPS = ("dpkg-dev", "cmake", "gcc", "make", f"postgresql-server-dev-{PG_MAJOR}", "libssl-dev")
TS_SOURCES_FILE = Path("/etc/apt/sources.list.d/fleetwatch-trixie-src.sources")
TS_SOURCES = f"""\
# Added by `fleetwatch stack up`: source packages only, to build TimescaleDB for PostgreSQL {PG_MAJOR}.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: {TS_SUITE}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path
    data: Path
    socket_dir: Path
    conf: Path
    hba: Path
    log: Path
    build: Path


def paths(settings: Settings) -> Paths:
    stack = settings.stack_dir.resolve()
    root = stack / "pg"
    data = root / "data"
    return Paths(
        root=root,
        data=data,
        socket_dir=root / "run",
        conf=data / "fleetwatch.conf",
        hba=data / "pg_hba.conf",
        log=stack / "logs" / "postgres.log",
        build=stack / "build" / "timescaledb",
    )


def _pg_sharedir() -> Path:
    return Path(f"/usr/share/postgresql/{PG_MAJOR}")


def timescaledb_control() -> Path:
    return _pg_sharedir() / "extension" / "timescaledb.control"


def timescaledb_installed_version() -> str | None:
    try:
        text = timescaledb_control().read_text()
    except FileNotFoundError:
        return None
    match = re.search(r"default_version\s*=\s*'([^']+)'", text)
    lib = Path(f"/usr/lib/postgresql/{PG_MAJOR}/lib/timescaledb.so")
    return match.group(1) if match and lib.exists() else None


def install(settings: Settings, apt_log: Path) -> str:
    """Install PostgreSQL and, if missing, build + install TimescaleDB; return what was done."""
    apt_install(PACKAGES, apt_log, SERVICE)
    if timescaledb_installed_version() is not None:
        return "cached"
    if not is_root():
        raise StackError(SERVICE, "TimescaleDB is not installed and building it needs root")
    p = paths(settings)
    log = p.log.parent / "timescaledb-build.log"
    # A distribution package, when the release has one, beats a local build.
    apt_update(log)
    try:
        apt_install((f"postgresql-{PG_MAJOR}-timescaledb",), log, SERVICE)
        if timescaledb_installed_version() is not None:
            return "installed from Debian"
    except StackError:
        pass
    _build_timescaledb(p, log)
    if timescaledb_installed_version() is None:
        raise StackError(SERVICE, f"TimescaleDB build finished but {timescaledb_control()} is missing", log)
    return "built from source"


def _build_timescaledb(p: Paths, log: Path) -> None:
    if not TS_SOURCES_FILE.exists() or TS_SOURCES_FILE.read_text() != TS_SOURCES:
        TS_SOURCES_FILE.write_text(TS_SOURCES)
        _force_apt_update(log)
    apt_install(TS_BUILD_DEPS, log, SERVICE)
    if p.build.exists():
        shutil.rmtree(p.build)
    p.build.mkdir(parents=True)
    try:
        run(["apt-get", "source", "-q", "--download-only", f"timescaledb/{TS_SUITE}"], SERVICE,
            "downloading the timescaledb source package", log, cwd=p.build, timeout=600)
    except StackError:
        _force_apt_update(log)
        run(["apt-get", "source", "-q", "--download-only", f"timescaledb/{TS_SUITE}"], SERVICE,
            "downloading the timescaledb source package", log, cwd=p.build, timeout=600)
    dsc = sorted(p.build.glob("timescaledb_*.dsc"))
    if not dsc:
        raise StackError(SERVICE, f"no timescaledb .dsc downloaded into {p.build}", log)
    src = p.build / "src"
    run(["dpkg-source", "-x", "--no-check", str(dsc[-1]), str(src)], SERVICE, "unpacking the source", log,
        cwd=p.build)
    build = p.build / f"build-{PG_MAJOR}"
    # Same options as debian/rules: the Apache-2 edition, no telemetry.
    run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
         f"-DPG_CONFIG={PG_BIN}/pg_config", "-DSEND_TELEMETRY_DEFAULT=OFF", "-DUSE_TELEMETRY=OFF",
         "-DAPACHE_ONLY=1", "-DREGRESS_CHECKS=OFF", "-DTAP_CHECKS=OFF", "-DLINTER=OFF"],
        SERVICE, "configuring the TimescaleDB build", log, timeout=600)
    run(["make", "-C", str(build), f"-j{os.cpu_count() or 2}"], SERVICE, "building TimescaleDB", log,
        timeout=1800)
    run(["make", "-C", str(build), "install"], SERVICE, "installing TimescaleDB", log, timeout=600)


def _force_apt_update(log: Path) -> None:
    run(["apt-get", "update", "-q"], "apt", "apt-get update", log,
        env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)


# --------------------------------------------------------------------------------------------
# cluster
# --------------------------------------------------------------------------------------------


def render_conf(settings: Settings, p: Paths) -> str:
    return render_template(("postgres", "fleetwatch.conf.tmpl"), {
        "host": settings.pg_host,
        "port": settings.pg_port,
        "socket_dir": p.socket_dir,
    })


def _as_postgres(argv: list[str]) -> list[str]:
    if not is_root():
        raise StackError(SERVICE, "the project cluster is administered as the OS user postgres: run as root")
    return ["runuser", "-u", _OS_USER, "--", *argv]


def _postmaster_pid(p: Paths) -> int | None:
    try:
        pid = int((p.data / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    # postmaster's command line is `.../postgres -D <data>`; a stale pid after a reboot is not ours.
    return pid if pid_alive(pid) and str(p.data) in cmdline(pid) else None


def _init_cluster(settings: Settings, p: Paths) -> bool:
    if is_root():
        check_traversable(p.root, SERVICE, _OS_USER)
    socket_path = p.socket_dir / f".s.PGSQL.{settings.pg_port}"
    if len(str(socket_path)) > 107:  # sun_path limit; postgres would fail with a vaguer message
        raise StackError(SERVICE, f"socket path {socket_path} is longer than 107 bytes: "
                         "set FLEETWATCH_STACK_DIR to a shorter directory")
    p.root.mkdir(parents=True, exist_ok=True)
    p.socket_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(p.root, 0o700)
    chown_to(p.root, _OS_USER)
    chown_to(p.socket_dir, _OS_USER)
    p.log.parent.mkdir(parents=True, exist_ok=True)
    p.log.touch()
    chown_to(p.log, _OS_USER)
    created = False
    if not (p.data / "PG_VERSION").exists():
        run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(p.data), "-U", "postgres", "-E", "UTF8",
                          "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256"]),
            SERVICE, "initdb", p.log, timeout=300)
        created = True
    main_conf = p.data / "postgresql.conf"
    include = "include 'fleetwatch.conf'"
    if include not in main_conf.read_text():
        with open(main_conf, "a") as fh:
            fh.write(f"\n# fleetwatch settings (rendered on every `stack up`)\n{include}\n")
    changed = write_if_changed(p.conf, render_conf(settings, p), 0o600)
    changed |= write_if_changed(p.hba, render_template(("postgres", "pg_hba.conf.tmpl"), {}), 0o600)
    chown_to(p.conf, _OS_USER)
    chown_to(p.hba, _OS_USER)
    return created or changed


def _psql_admin(settings: Settings, p: Paths, sql: str, db: str = "postgres") -> str:
    argv = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(p.socket_dir),
            "-p", str(settings.pg_port), "-U", "postgres", "-d", db, "-At", "-f", "-"]
    return run(_as_postgres(argv),
               SERVICE, "bootstrap SQL", p.log, input_text=sql, timeout=120)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def bootstrap_sql(user: str, password: str, database: str, sink_user: str) -> tuple[str, str]:
    """(SQL run in the postgres DB, SQL run in the app DB): roles, database, extension; idempotent."""
    server = (
        f"SELECT 'CREATE ROLE {_ident(user)} LOGIN' WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_roles WHERE rolname = {_literal(user)}) \\gexec\n"
        # CREATEROLE: `fleetwatch db migrate` creates the sink, dashboard and per-org roles.
        f"ALTER ROLE {_ident(user)} WITH LOGIN CREATEROLE PASSWORD {_literal(password)};\n"
        # BYPASSRLS, which only a superuser grants: the sink COPYs straight into positions, and
        # COPY refuses a table under row-level security (the writer's policies admit every row).
        # `db migrate` makes it a login with its password.
        f"SELECT 'CREATE ROLE {_ident(sink_user)}' WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_roles WHERE rolname = {_literal(sink_user)}) \\gexec\n"
        f"ALTER ROLE {_ident(sink_user)} BYPASSRLS;\n"
        f"SELECT 'CREATE DATABASE {_ident(database)} OWNER {_ident(user)}' WHERE NOT EXISTS "
        f"(SELECT 1 FROM pg_database WHERE datname = {_literal(database)}) \\gexec\n"
    )
    app = "CREATE EXTENSION IF NOT EXISTS timescaledb;\n"
    return server, app


def _healthy(settings: Settings, password: str) -> bool:
    import psycopg

    with psycopg.connect(settings.pg_conninfo, password=password, connect_timeout=3) as conn:
        conn.execute("SELECT 1")
    return True


def ensure_up(settings: Settings, password: str) -> str:
    p = paths(settings)
    conf_changed = _init_cluster(settings, p)
    pid = _postmaster_pid(p)
    result = "running"
    if pid is not None and conf_changed:
        run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(p.data), "-w", "-t", "60", "-m", "fast",
                          "restart", "-l", str(p.log)]), SERVICE, "pg_ctl restart", p.log, timeout=120)
        result = "restarted"
    elif pid is None:
        if port_open(settings.pg_host, settings.pg_port):
            raise StackError(SERVICE, f"port {settings.pg_host}:{settings.pg_port} is held by another "
                             "process (another checkout's stack?); stop it or set FLEETWATCH_PG_PORT")
        with open(p.log, "a") as fh:
            fh.write(f"\n--- fleetwatch stack: starting postgres {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(p.data), "-w", "-t", "60", "start",
                          "-l", str(p.log)]), SERVICE, "pg_ctl start", p.log, timeout=120)
        result = "started"
    server_sql, app_sql = bootstrap_sql(
        settings.pg_user, password, settings.pg_database, settings.pg_sink_user
    )
    _psql_admin(settings, p, server_sql)
    _psql_admin(settings, p, app_sql, db=settings.pg_database)
    if not wait_until(lambda: _healthy(settings, password), 20):
        raise StackError(SERVICE, f"user {settings.pg_user} cannot connect to {settings.pg_database} "
                         f"on {settings.pg_host}:{settings.pg_port}", p.log)
    return result


def versions(settings: Settings, password: str) -> dict[str, str]:
    """Server version, TimescaleDB version and edition (``SHOW timescaledb.license``)."""
    import psycopg

    with psycopg.connect(settings.pg_conninfo, password=password, connect_timeout=3) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        license_ = conn.execute("SHOW timescaledb.license").fetchone()
    return {
        "postgres": str(server[0]).split()[0] if server else "?",
        "timescaledb": str(ext[0]) if ext else "missing",
        "edition": str(license_[0]) if license_ else "?",
    }


def stop(settings: Settings) -> bool:
    p = paths(settings)
    if _postmaster_pid(p) is None:
        return False
    run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(p.data), "-w", "-t", "60", "-m", "fast", "stop"]),
        SERVICE, "pg_ctl stop", p.log, timeout=120)
    return True


def status(settings: Settings, password: str | None) -> ServiceStatus:
    p = paths(settings)
    pid = _postmaster_pid(p)
    if pid is not None:
        state = "running"
    elif port_open(settings.pg_host, settings.pg_port):
        state = "foreign"
    else:
        state = "stopped"
    ts = timescaledb_installed_version() or "not installed"
    version = f"PG {PG_MAJOR} + TimescaleDB {ts}"
    if state == "running" and password:
        try:
            v = versions(settings, password)
            version = f"PG {v['postgres']} + TimescaleDB {v['timescaledb']} ({v['edition']})"
        except Exception:
            pass
    return ServiceStatus(SERVICE, state, settings.pg_port, version, p.data, p.log, pid)

"""Kafka: jars from Maven (stack/kafka/pom.xml), KRaft single node on the machine's JDK, SCRAM
accounts and ACLs (fleetwatch/kafka_auth.py), topics."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetwatch import kafka_auth
from fleetwatch.kafka_io import make_admin
from fleetwatch.settings import KAFKA_ROLES, Settings
from fleetwatch.topics import TOPICS, TopicSpec

from ._common import (
    ServiceStatus,
    StackError,
    apt_install,
    pid_alive,
    port_open,
    read_pid,
    render_template,
    run,
    spawn,
    stop_pid,
    template_path,
    wait_until,
    write_if_changed,
)

if TYPE_CHECKING:
    from kafka import KafkaAdminClient
    from kafka.admin import ACL

SERVICE = "kafka"
PACKAGES = ("openjdk-17-jre-headless", "maven")


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path
    libs: Path
    libs_stamp: Path
    conf: Path
    log4j: Path
    data: Path
    cluster_id: Path
    scram_stamp: Path
    pid: Path
    log: Path


def paths(settings: Settings) -> Paths:
    stack = settings.stack_dir.resolve()
    root = stack / "kafka"
    return Paths(
        root=root,
        libs=root / "libs",
        libs_stamp=root / "libs" / ".pom.sha256",
        conf=root / "server.properties",
        log4j=root / "log4j2.xml",
        data=root / "data",
        cluster_id=root / "cluster.id",
        scram_stamp=root / "scram.sha256",
        pid=root / "kafka.pid",
        log=stack / "logs" / "kafka.log",
    )


def bootstrap_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    if not host or not port.isdigit():
        raise StackError(SERVICE, "FLEETWATCH_KAFKA_BOOTSTRAP must be host:port "
                         f"(got {settings.kafka_bootstrap!r})")
    return host, int(port)


BROKER_ROLE = "broker"  # the node's own identity: inter-broker and broker -> controller


def render_properties(settings: Settings, data_dir: Path, passwords: dict[str, str]) -> str:
    """server.properties; ``passwords``: role -> password (the broker's goes into the file)."""
    host, port = bootstrap_host_port(settings)
    for role, password in passwords.items():
        # Between double quotes in a JAAS line, or inside --add-scram's [name=...,password=...].
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", password):
            raise StackError(SERVICE, f"{kafka_auth.password_secret(role)} may hold only A-Z a-z 0-9 _ -")
    tools_port = settings.kafka_tools_bootstrap.rpartition(":")[2]
    return render_template(("kafka", "server.properties.tmpl"), {
        "host": host,
        "port": port,
        "controller_port": settings.kafka_controller_port,
        "data_dir": data_dir,
        "broker_user": kafka_auth.username(settings, BROKER_ROLE),
        "broker_password": passwords[BROKER_ROLE],
        "admin_user": kafka_auth.username(settings, "admin"),
        "tools_port": tools_port,
        "tools_accounts": " ".join(f'user_{kafka_auth.username(settings, role)}="{passwords[role]}"'
                                   for role in KAFKA_ROLES if role in passwords),
    })


def _passwords(settings: Settings) -> dict[str, str]:
    return {role: settings.secret(kafka_auth.password_secret(role)) for role in (*KAFKA_ROLES, BROKER_ROLE)}


def new_cluster_id() -> str:
    """Kafka's own Uuid text form: URL-safe base64 of 16 random bytes, unpadded, never starting
    with "-" (as Kafka's Uuid.randomUuid does): `kafka-storage format -t -x…` reads it as an option
    and fails, 1 fresh stack in 64 (seen in tests/stack/test_restart.py)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def pinned_version() -> str:
    pom = template_path("kafka", "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if not match:
        raise StackError(SERVICE, "stack/kafka/pom.xml has no <kafka.version> property")
    return match.group(1)


def installed_version(p: Paths) -> str:
    jars = sorted(p.libs.glob("kafka_2.13-*.jar"))
    if not jars:
        return "not installed"
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar")


def install(settings: Settings, apt_log: Path) -> bool:
    """Resolve the broker's jars with Maven into .stack/kafka/libs; skip when the pom is unchanged.

    Maven's own cache (~/.m2, or MAVEN_OPTS=-Dmaven.repo.local=...) makes a re-resolve cheap.
    """
    p = paths(settings)
    if shutil.which("java") is None or shutil.which("mvn") is None:
        apt_install(PACKAGES, apt_log, SERVICE)
    pom = template_path("kafka", "pom.xml")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if p.libs_stamp.exists() and p.libs_stamp.read_text().strip() == digest:
        return False
    if p.libs.exists():
        shutil.rmtree(p.libs)
    p.libs.mkdir(parents=True)
    argv = ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={p.libs}"]
    run(argv, SERVICE, "resolving Kafka jars with Maven", apt_log, timeout=900)
    p.libs_stamp.write_text(digest + "\n")
    return True


def _java_argv(settings: Settings, p: Paths, main_class: str, *args: str) -> list[str]:
    heap = settings.kafka_heap_mb
    if heap > 1024:
        raise StackError(SERVICE, f"FLEETWATCH_KAFKA_HEAP_MB must be <= 1024 (got {heap})")
    return [
        "java", f"-Xmx{heap}m", f"-Xms{min(heap, 256)}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={p.log4j}",
        "-cp", f"{p.libs}/*", main_class, *args,
    ]


def _admin(settings: Settings, client_id: str, **overrides: Any) -> KafkaAdminClient:
    overrides.setdefault("bootstrap_timeout_ms", 5000)
    # The stack acts as admin whatever FLEETWATCH_KAFKA_AS says.
    return make_admin(settings.model_copy(update={"kafka_as": None}), client_id=client_id, **overrides)


def _healthy(settings: Settings) -> bool:
    admin = _admin(settings, "fw-health", request_timeout_ms=5000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def ensure_up(settings: Settings) -> str:
    p = paths(settings)
    for d in (p.root, p.data, p.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    passwords = _passwords(settings)
    conf_changed = write_if_changed(p.conf, render_properties(settings, p.data, passwords), 0o600)
    write_if_changed(p.log4j, template_path("kafka", "log4j2.xml").read_text())
    host, port = bootstrap_host_port(settings)

    pid = read_pid(p.pid, str(p.conf))
    if pid is not None and conf_changed:
        stop(settings)
        pid = None
    if pid is not None:
        _wait_healthy(settings, p, pid, 60)
        return "running"

    tools_port = int(settings.kafka_tools_bootstrap.rpartition(":")[2])
    for busy in (port, settings.kafka_controller_port, tools_port):
        if port_open(host, busy):
            raise StackError(SERVICE, f"port {host}:{busy} is held by another process (another "
                             "checkout's stack?); stop it or change FLEETWATCH_KAFKA_BOOTSTRAP")
    if not (p.data / "meta.properties").exists():
        if not p.cluster_id.exists():
            p.cluster_id.write_text(new_cluster_id() + "\n")
        # The admin and the broker need SCRAM accounts before any SCRAM client can get in, and
        # Kafka's admin client cannot set them through the controller listener (4.1: "not yet
        # supported when communicating directly with the controller quorum"): they are part of
        # the format (the two passwords are on its command line for those seconds). The
        # services' accounts are then set through the admin (`ensure_access`).
        scram = [arg for role in ("admin", BROKER_ROLE) for arg in (
            "--add-scram", f"{kafka_auth.SASL_MECHANISM}=[name={kafka_auth.username(settings, role)},"
                           f"password={passwords[role]}]")]
        run(_java_argv(settings, p, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       "-t", p.cluster_id.read_text().strip(), "-c", str(p.conf), *scram),
            SERVICE, "formatting KRaft storage", p.log, timeout=120)
    with open(p.log, "a") as fh:
        fh.write(f"\n--- fleetwatch stack: starting kafka {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    new_pid = spawn(_java_argv(settings, p, "kafka.Kafka", str(p.conf)), p.log, p.pid, cwd=p.root)
    _wait_healthy(settings, p, new_pid, 90)
    return "started"


def _scram_stamp(settings: Settings, passwords: dict[str, str]) -> str:
    """Hash of the account list and the store it was set in (SCRAM credentials cannot be read back)."""
    cluster = (paths(settings).data / "meta.properties").read_text()
    users = sorted((kafka_auth.username(settings, role), pw) for role, pw in passwords.items())
    return hashlib.sha256(repr((cluster, users)).encode()).hexdigest()


def _wait_healthy(settings: Settings, p: Paths, pid: int, timeout_s: float) -> None:
    if wait_until(lambda: _healthy(settings), timeout_s, alive=lambda: pid_alive(pid), interval=0.5):
        return
    host, port = bootstrap_host_port(settings)
    if not pid_alive(pid):
        raise StackError(SERVICE, f"broker exited on {host}:{port}", p.log)
    # kafka-python retries a refused SASL login until its bootstrap times out: say what it may be.
    admin = kafka_auth.username(settings, "admin")
    raise StackError(SERVICE, f"broker on {host}:{port} does not answer {admin} within {timeout_s:g} s. "
                     f"If its log says 'Failed authentication', the store in {p.data} predates SASL (its "
                     "SCRAM accounts are made when it is formatted): stop kafka, move that directory away "
                     "and run `fleetwatch stack up` again", p.log)


def ensure_access(settings: Settings) -> list[str]:
    """SCRAM accounts for every role and the broker, and each role's ACLs exactly as
    fleetwatch/kafka_auth.py says (missing ones created, stale ones of our principals deleted).

    SCRAM credentials cannot be read back, so a stamp (hash of the account list) says whether the
    passwords were already set; an unchanged stack costs one describe of the ACLs.
    """
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    p = paths(settings)
    passwords = _passwords(settings)
    users = {kafka_auth.username(settings, role): pw for role, pw in passwords.items()}
    stamp = _scram_stamp(settings, passwords)
    changes: list[str] = []
    admin = _admin(settings, "fw-stack")
    try:
        described = admin.describe_user_scram_credentials(list(users))
        missing = [u for u, info in described.items() if not info["credential_infos"]]
        current = p.scram_stamp.exists() and p.scram_stamp.read_text().strip() == stamp
        if missing or not current:
            results = admin.alter_user_scram_credentials([
                UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, pw, iterations=8192)
                for user, pw in users.items()
            ])
            failed = {user: error for user, error in results.items() if error}
            if failed:
                raise StackError(SERVICE, f"setting SCRAM credentials failed: {failed}", p.log)
            write_if_changed(p.scram_stamp, stamp + "\n", 0o600)
            changes.append(f"SCRAM accounts set: {', '.join(sorted(users))}")
        changes += _ensure_acls(settings, admin)
    finally:
        admin.close()
    return changes


def wanted_acls(settings: Settings) -> set[ACL]:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    acls = set()
    for role, grants in kafka_auth.grants(settings).items():
        principal = f"User:{kafka_auth.username(settings, role)}"
        for grant in grants:
            pattern = ResourcePattern(
                ResourceType.TOPIC if grant.resource == "topic" else ResourceType.GROUP, grant.name,
                ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL)
            acls.add(ACL(principal, "*", ACLOperation[grant.operation], ACLPermissionType.ALLOW, pattern))
    return acls


def _ensure_acls(settings: Settings, admin: KafkaAdminClient) -> list[str]:
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                           ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
    existing, error = admin.describe_acls(everything)
    if error.errno:
        raise StackError(SERVICE, f"describing ACLs failed: {error}")
    ours = {f"User:{kafka_auth.username(settings, role)}" for role in KAFKA_ROLES}
    have = {acl for acl in existing if acl.principal in ours}
    want = wanted_acls(settings)
    changes = []
    if want - have:
        result = admin.create_acls(list(want - have))
        if result["failed"]:
            raise StackError(SERVICE, f"creating ACLs failed: {result['failed'][:3]}")
        changes.append(f"{len(want - have)} ACLs created")
    if have - want:
        admin.delete_acls(list(have - want))
        changes.append(f"{len(have - want)} stale ACLs deleted")
    return changes


def ensure_topics(settings: Settings, topics: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Make the project's topics match the one list in code; return what was changed.

    Creates missing topics; raises the partition count and resets retention / cleanup policy of
    existing ones that differ (someone may have created one by hand with broker defaults
    before this ran). Partitions are never reduced (Kafka cannot): that is reported as an error.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(settings, "fw-stack")
    changes: list[str] = []
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            # TopicAlreadyExists: a concurrent `stack up` created it first.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([
                    NewTopic(name=t.name, num_partitions=t.partitions, replication_factor=1,
                             topic_configs=_topic_configs(t))
                    for t in missing
                ])
            changes += [f"created {t.name}" for t in missing]
        present = [t for t in topics if t.name in existing]
        if not present:
            return changes
        counts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics([t.name for t in present])}
        grow = {t.name: NewPartitions(total_count=t.partitions)
                for t in present if counts[t.name] < t.partitions}
        if grow:
            admin.create_partitions(grow)
            changes += [f"{name}: partitions {counts[name]} -> {np.total_count}" for name, np in grow.items()]
        too_many = [t for t in present if counts[t.name] > t.partitions]
        if too_many:
            detail = ", ".join(f"{t.name} has {counts[t.name]} (want {t.partitions})" for t in too_many)
            raise StackError(SERVICE, "topics with more partitions than fleetwatch/topics.py says: "
                             f"{detail}; delete them (kafka cannot shrink a topic)")
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in present]
        ).get("topic", {})
        fix = []
        for t in present:
            current = {k: v.get("value") for k, v in described.get(t.name, {}).items()}
            want = _topic_configs(t)
            if any(current.get(k) != v for k, v in want.items()):
                fix.append(ConfigResource(ConfigResourceType.TOPIC, t.name, configs=want))
        if fix:
            admin.alter_configs(fix)
            changes += [f"{r.name}: retention/cleanup reset" for r in fix]
        return changes
    finally:
        admin.close()


def _topic_configs(spec: TopicSpec) -> dict[str, str]:
    return {"retention.ms": str(spec.retention_ms), "cleanup.policy": spec.cleanup_policy}


def stop(settings: Settings) -> bool:
    p = paths(settings)
    pid = read_pid(p.pid, str(p.conf))
    if pid is None:
        return False
    # Controlled shutdown of a single KRaft node takes a few seconds; give it time before SIGKILL.
    stop_pid(pid, timeout=60)
    p.pid.unlink(missing_ok=True)
    return True


def status(settings: Settings) -> ServiceStatus:
    p = paths(settings)
    host, port = bootstrap_host_port(settings)
    pid = read_pid(p.pid, str(p.conf))
    if pid is not None:
        state = "running"
    elif port_open(host, port):
        state = "foreign"
    else:
        state = "stopped"
    return ServiceStatus(SERVICE, state, port, installed_version(p), p.data, p.log, pid)

"""Kafka: jars from Maven (stack/kafka/pom.xml), KRaft single node on the machine's JDK, topics."""

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

from fleetwatch.settings import Settings
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
        pid=root / "kafka.pid",
        log=stack / "logs" / "kafka.log",
    )


def bootstrap_host_port(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    if not host or not port.isdigit():
        raise StackError(SERVICE, "FLEETWATCH_KAFKA_BOOTSTRAP must be host:port "
                         f"(got {settings.kafka_bootstrap!r})")
    return host, int(port)


def render_properties(settings: Settings, data_dir: Path) -> str:
    host, port = bootstrap_host_port(settings)
    return render_template(("kafka", "server.properties.tmpl"), {
        "host": host,
        "port": port,
        "controller_port": settings.kafka_controller_port,
        "data_dir": data_dir,
    })


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


def _healthy(settings: Settings) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="fw-health",
                             request_timeout_ms=5000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def ensure_up(settings: Settings) -> str:
    p = paths(settings)
    for d in (p.root, p.data, p.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    conf_changed = write_if_changed(p.conf, render_properties(settings, p.data))
    write_if_changed(p.log4j, template_path("kafka", "log4j2.xml").read_text())
    host, port = bootstrap_host_port(settings)

    pid = read_pid(p.pid, str(p.conf))
    if pid is not None and conf_changed:
        stop(settings)
        pid = None
    if pid is not None:
        if wait_until(lambda: _healthy(settings), 60, alive=lambda: pid_alive(pid)):
            return "running"
        raise StackError(SERVICE, f"pid {pid} runs but the broker does not answer on {host}:{port}", p.log)

    for busy in (port, settings.kafka_controller_port):
        if port_open(host, busy):
            raise StackError(SERVICE, f"port {host}:{busy} is held by another process (another "
                             "checkout's stack?); stop it or change FLEETWATCH_KAFKA_BOOTSTRAP")
    if not (p.data / "meta.properties").exists():
        if not p.cluster_id.exists():
            p.cluster_id.write_text(new_cluster_id() + "\n")
        run(_java_argv(settings, p, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                       "-t", p.cluster_id.read_text().strip(), "-c", str(p.conf)),
            SERVICE, "formatting KRaft storage", p.log, timeout=120)
    with open(p.log, "a") as fh:
        fh.write(f"\n--- fleetwatch stack: starting kafka {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    new_pid = spawn(_java_argv(settings, p, "kafka.Kafka", str(p.conf)), p.log, p.pid, cwd=p.root)
    if not wait_until(lambda: _healthy(settings), 90, alive=lambda: pid_alive(new_pid), interval=0.5):
        state = "exited" if not pid_alive(new_pid) else "did not answer within 90 s"
        raise StackError(SERVICE, f"broker {state} on {host}:{port}", p.log)
    return "started"


def ensure_topics(settings: Settings, topics: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Make the project's topics match the one list in code; return what was changed.

    Creates missing topics; raises the partition count and resets retention / cleanup policy of
    existing ones that differ (someone may have created one by hand with broker defaults
    before this ran). Partitions are never reduced (Kafka cannot): that is reported as an error.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="fw-stack")
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

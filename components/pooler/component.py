"""The Pooler component: PgBouncer in front of the primary (read-write) and the replicas (read-only).

Per path: a Deployment of PgBouncer pods with a pinned PgBouncer exporter sidecar, a ClusterIP Service
on the PostgreSQL port, a PodDisruptionBudget (with more than one pod) and optionally an HPA. One
ConfigMap holds both paths' ``pgbouncer.ini``; the lookup role's ``userlist.txt`` comes from the
database component's Secret (mounted, never copied). A NetworkPolicy admits the database's client
pods to PgBouncer and the monitoring namespace to the exporter; the pooler pods carry the database's
client labels, so the database NetworkPolicy admits them.

Image facts (cloudnative-pg/pgbouncer-containers Dockerfile): Debian's ``pgbouncer`` package at
``/usr/bin/pgbouncer``, user ``pgbouncer`` uid 998 / gid 996. The container command runs
``pgbouncer <ini>`` directly (logs to stderr, no pid file, no Unix socket), so a read-only root
filesystem works.

The exporter's password comes from a mounted Secret file; no pooler container has a Secret in its env.
prometheus-community/pgbouncer_exporter v0.12.1 (``pgbouncer_exporter.go``) takes only a connection
string (``--pgBouncer.connectionString`` / ``PGBOUNCER_EXPORTER_CONNECTION_STRING``), no password file,
and hands it to lib/pq v1.12.3 (its ``go.mod``). lib/pq reads ``PGPASSWORD`` (and ``PGPASSFILE``) from
the environment when the string has no password (``connector.go``: ``Password ... env:"PGPASSWORD"``).
A pass file would not do: lib/pq ignores one with any group or world bit (``internal/pqutil/path.go``,
``Perm()&0x77``), and with the pod's ``fsGroup`` the kubelet adds group-read (0440) to every Secret
volume file whatever ``defaultMode`` says (kubernetes ``pkg/volume/volume_linux.go`` ``roMask``;
kubernetes/kubernetes#57923), while without ``fsGroup`` the root-owned file is unreadable to uid 998.
So the container command (:func:`exporter_command`) runs the image's shell (its base is
``quay.io/prometheus/busybox``, the exporter's ``Dockerfile``), reads the mounted ``password`` key into
``PGPASSWORD`` and execs the exporter: the password lives only in the exporter's process
environment (as Patroni's do), never in the pod spec or a command line. The connection string names the
lookup role, which PgBouncer lists in ``stats_users`` only (read-only ``SHOW`` commands on the admin
console, not ``admin_users``).

Shutdown: the ``preStop`` hook waits while Kubernetes removes the pod from the Service endpoints, then
sends PgBouncer SIGINT ("safe shutdown": stop listening, let running transactions finish, disconnect each
client at its next transaction) and waits for it to exit. SIGTERM alone would not do: since 1.23 it
waits for every client to disconnect, and tsflow's clients never do. Clients reconnect, with backoff,
through the Service to another pod; the generator's ledger keeps ingest exactly once across the cut.

TLS (when the database has it, ``components/pooler/tls.py``): PgBouncer takes only TLS from clients and
presents a certificate of its own, which names the pooler's Services (then fixed names), and reaches the
database with ``verify-full``; the connection handed to the workloads carries the pooler's CA, so they
verify PgBouncer with ``verify-full``. PgBouncer reads its certificate at start: a renewed one is served
after the pods restart. The certificate comes from ``tls_secret_name`` (made by the user) or from
a cert-manager ``Certificate`` this component creates with the database's issuer (``tls_issuer``). The
exporter reaches PgBouncer over loopback inside the pod: with ``sslmode=require`` (encrypted, not
verified), because PgBouncer cannot exempt loopback from ``client_tls_sslmode`` and no certificate names
127.0.0.1; verifying would add nothing there, since whoever could intercept the pod's own loopback is
inside the pod, with its secrets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import pulumi
import pulumi_kubernetes as k8s

from ..autoscaler import Autoscaler, AutoscalerArgs, AutoscalingSpec
from . import pgbouncer_ini as ini
from . import tls as pooler_tls
from .auth import PASSWORD_KEY, USERLIST_KEY, LookupCredentials
from ..shared.images import check_pinned_image
from ..shared.labels import recommended_labels, selector_labels
from ..shared.network import ingress_policy, scraper_peer
from ..shared.pod_spec import check_dns_label, image_version, merge_pod_labels
from ..shared.security import container_security_context, pod_security_context
from ..shared.types import DatabaseConnection, Resources, ScaleTarget, ScrapeTarget, registrable
from ..shared.validate import check_range

if TYPE_CHECKING:  # a runtime import would be circular (the database component imports components.pooler)
    from ..timescaledb import TlsIssuer

# PgBouncer 1.25.2 on Debian trixie, one build. CloudNativePG re-pushes the tag ``1.25.2`` with every base
# image update and also tags each build ``<version>-<YYYYMMDDhhmm>-<distro>`` (cloudnative-pg/pgbouncer-containers
# docker-bake.hcl), so this tag names exactly this digest. Source of the pair: an e2e test that runs it as a
# CloudNativePG Pooler, https://github.com/ydixken/pgcopydb-operator/blob/9413a3ca6820ca47b6f22091d23d4656dc78904f/test/e2e/progress_pooling_test.go
DEFAULT_IMAGE = (
    "ghcr.io/cloudnative-pg/pgbouncer:1.25.2-202609151159-trixie"
    "@sha256:218c1c9bd0c217dae3a6561b75446b7f5dde0ada55b73956659ee4b8a4bcc8ee"
)
# pgbouncer_exporter v0.12.1 (release tags are pushed once). Source of the digest: a conformance test that runs
# this image against PgBouncer, https://github.com/ollygarden/grafts/blob/8d23dee0234ef1c26303d1ad58860d958de38ce7/receiver/pgbouncerreceiver/conformance_integration_test.go
DEFAULT_EXPORTER_IMAGE = (
    "quay.io/prometheuscommunity/pgbouncer-exporter:v0.12.1"
    "@sha256:30f31b6c2efdad3647f8182cc7c1a3a19e42bae5d17387694989f969371c230d"
)
EXPORTER_BINARY = "/bin/pgbouncer_exporter"
"""The exporter image's entrypoint (its Dockerfile)."""
EXPORTER_SECRET_DIR = "/etc/pgbouncer-exporter"
EXPORTER_PASSWORD_FILE = f"{EXPORTER_SECRET_DIR}/{PASSWORD_KEY}"
"""Where the exporter container mounts the lookup Secret's ``PASSWORD_KEY`` (its only file)."""
APP_NAME = "pgbouncer"
COMPONENT = "pooler"
PATH_LABEL = "timescale-k8s.io/pooler-path"
PGBOUNCER_UID = 998
PGBOUNCER_GID = 996
EXPORTER_PORT = 9127
POOLER_CONTAINER = "pgbouncer"
EXPORTER_CONTAINER = "pgbouncer-exporter"
PORT_NAME = "pgbouncer"
EXPORTER_PORT_NAME = "exporter"
SCRAPE_JOB = "pgbouncer"
"""Scrape job of the exporters (both paths); the pooler alerts and dashboard select on it."""
CONFIG_CHECKSUM_ANNOTATION = "timescale-k8s.io/pgbouncer-config-sha256"
PRE_STOP_SLEEP_SECONDS = 5
PRE_STOP = f"sleep {PRE_STOP_SLEEP_SECONDS}; kill -INT 1; while kill -0 1 2>/dev/null; do sleep 1; done"
"""Run by the image's /bin/sh (Debian); PgBouncer is the container's PID 1 (the command runs it directly)."""
DEFAULT_RESOURCES = Resources(cpu_request="100m", memory_request="64Mi", memory_limit="128Mi")

Path = Literal["rw", "ro"]


@dataclass(frozen=True, kw_only=True)
class PoolerArgs:
    """Inputs of :class:`Pooler`."""

    namespace: pulumi.Input[str]
    """Namespace of every object; required."""
    database: DatabaseConnection
    """The direct application connection (hosts, port, database, client labels); required."""
    lookup: LookupCredentials
    """The auth_query lookup role's Secret (``TimescaleDB.pooler_lookup``); required."""
    read_write: ini.PoolSettings = field(default_factory=ini.PoolSettings)
    """Pool in front of the primary; default 2 pods, 10 server connections each, transaction mode."""
    read_only: ini.PoolSettings = field(default_factory=ini.PoolSettings)
    """Pool in front of the replicas; default as ``read_write``."""
    max_client_connections: int = 1000
    """Client connections each PgBouncer accepts (10-100000); default 1000."""
    image: str = DEFAULT_IMAGE
    """Pinned PgBouncer image; default ``DEFAULT_IMAGE`` (PgBouncer 1.25.2, by tag and digest)."""
    exporter_image: str = DEFAULT_EXPORTER_IMAGE
    """Pinned PgBouncer exporter image; default ``DEFAULT_EXPORTER_IMAGE`` (v0.12.1, by tag and digest). Its
    command is replaced by :func:`exporter_command`: it needs ``/bin/sh`` and ``cat`` and the exporter at
    ``EXPORTER_BINARY``."""
    resources: Resources = DEFAULT_RESOURCES
    """PgBouncer container resources; default 100m / 64Mi (limit 128Mi)."""
    exporter_resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="20m", memory_request="32Mi", memory_limit="64Mi")
    )
    """Exporter sidecar resources; default 20m / 32Mi (limit 64Mi)."""
    tls_secret_name: str | None = None
    """The pooler's own ``kubernetes.io/tls`` Secret (``tls.crt``, ``tls.key``, ``ca.crt``) for
    :func:`~components.pooler.tls.certificate_dns_names`; required exactly when the database has TLS
    (``database.ca_secret_name``), and then clients must use TLS and verify PgBouncer, and PgBouncer
    verifies the database. Default None (no TLS)."""
    tls_issuer: TlsIssuer | None = None
    """A cert-manager issuer (the database's): the component creates a ``Certificate`` writing
    ``tls_secret_name``; default None (the Secret is made by someone else)."""
    monitoring_namespace: str | None = None
    """Namespace allowed to scrape the exporters; default None: the pooler's own namespace."""
    autoscaling: AutoscalingSpec | None = None
    """An HPA per path between these bounds (the floor is raised to each path's instances); default none."""
    termination_grace_seconds: int = 60
    """Seconds PgBouncer gets to let clients finish after SIGTERM; default 60."""


def check_args(name: str, args: PoolerArgs) -> None:
    """Raise ``ValueError`` naming the field and value."""
    check_dns_label("pooler name", name)
    if len(name) > 40:
        raise ValueError(f"pooler name ({name!r}) must be at most 40 characters (objects append '-rw-pdb' and more)")
    args.read_write.check("read_write")
    args.read_only.check("read_only")
    check_range("max_client_connections", args.max_client_connections, 10, 100_000)
    check_pinned_image(args.image, field="image")
    check_pinned_image(args.exporter_image, field="exporter_image")
    args.resources.check("resources")
    args.exporter_resources.check("exporter_resources")
    check_range("termination_grace_seconds", args.termination_grace_seconds, 10, 3600)
    pooler_tls.check_tls(
        tls_secret_name=args.tls_secret_name,
        database_ca_secret_name=args.database.ca_secret_name,
        tls_issuer=args.tls_issuer,
        dns_names=pooler_tls.certificate_dns_names(name, args.namespace) if isinstance(args.namespace, str) else None,
    )
    if args.monitoring_namespace is not None:
        check_dns_label("monitoring_namespace", args.monitoring_namespace)
    if args.autoscaling is not None:
        floor = max(args.read_write.instances, args.read_only.instances)
        args.autoscaling.check(
            "autoscaling", requested_resources=frozenset({"cpu", "memory"}), min_replicas_floor=1, stateful=False
        )
        if floor > args.autoscaling.max_replicas:
            raise ValueError(
                f"autoscaling.max_replicas ({args.autoscaling.max_replicas}) must be >= the instances of each path ({floor})"
            )


def exporter_command(password_file: str = EXPORTER_PASSWORD_FILE, binary: str = EXPORTER_BINARY) -> list[str]:
    """The exporter container's command: export ``PGPASSWORD`` from the mounted file, then ``exec`` the exporter.

    The container's ``args`` follow as ``"$@"``. ``$$`` is the kubelet's escape for a literal ``$`` (it would
    otherwise try ``$(...)`` as a variable reference); the shell expands ``$(cat ...)``, which also drops a
    trailing newline. An unreadable or empty file stops the container with a message instead of starting
    an exporter that cannot log in.
    """
    script = (
        f'PGPASSWORD="$$(cat {password_file})" && [ -n "$PGPASSWORD" ] && export PGPASSWORD'
        f' || {{ echo "pgbouncer-exporter: no password in {password_file}" >&2; exit 1; }}; exec {binary} "$@"'
    )
    return ["/bin/sh", "-c", script, binary]


def config_checksum(text: str) -> str:
    """The pod annotation that rolls PgBouncer when its configuration changes."""
    return hashlib.sha256(text.encode()).hexdigest()


class Pooler(pulumi.ComponentResource):
    """PgBouncer for the read-write and read-only paths, with metrics, disruption budgets and network policy."""

    connection: DatabaseConnection
    """The application connection through the pooler (read-write and read-only hosts, same Secret)."""
    deployments: dict[str, k8s.apps.v1.Deployment]
    services: dict[str, k8s.core.v1.Service]
    scrape_target: ScrapeTarget
    scale_targets: dict[str, ScaleTarget]
    pod_labels: dict[str, str]

    def __init__(self, name: str, args: PoolerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_args(name, args)
        super().__init__("timescale-k8s:index:Pooler", name, None, opts)
        self._name = name
        self._args = args
        self.pod_labels = selector_labels(app=APP_NAME, instance=name, component=COMPONENT)
        self._labels = recommended_labels(app=APP_NAME, instance=name, component=COMPONENT, version=image_version(args.image))
        servers = {"rw": args.database.read_write_host, "ro": args.database.read_only_host}
        pools = {"rw": args.read_write, "ro": args.read_only}
        texts = {
            path: pulumi.Output.from_input(host).apply(
                lambda h, pool=pools[path]: ini.pgbouncer_ini(
                    ini.IniSettings(
                        database=args.database.database,
                        host=h,
                        port=args.database.port,
                        pool=pool,
                        max_client_connections=args.max_client_connections,
                        tls=args.tls_secret_name is not None,
                    )
                )
            )
            for path, host in servers.items()
        }
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=self._metadata(),
            data={f"{path}.ini": text for path, text in texts.items()},
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.tls_issuer is not None:
            self._certificate(args.tls_issuer)
        self.deployments, self.services, self.scale_targets = {}, {}, {}
        for path, pool in pools.items():
            self.deployments[path] = self._deployment(path, pool, config_map, texts[path])
            self.services[path] = self._service(path)
            self.scale_targets[path] = ScaleTarget.of(
                self.deployments[path],
                container_resources=[args.resources, args.exporter_resources],
                min_replicas_floor=1,
                stateful=False,
            )
            if pool.instances > 1 or args.autoscaling is not None:
                self._disruption_budget(path)
            if args.autoscaling is not None:
                spec = replace(args.autoscaling, min_replicas=max(args.autoscaling.min_replicas, pool.instances))
                Autoscaler(
                    f"{name}-{path}-autoscaler",
                    AutoscalerArgs(namespace=args.namespace, target=self.scale_targets[path], app_name=APP_NAME,
                                   **spec.spec_fields()),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        self._network_policy()
        self.connection = replace(
            args.database,
            read_write_host=self._fqdn(self.services["rw"]),
            read_only_host=self._fqdn(self.services["ro"]),
            server_pod_labels=self.pod_labels,
            server_namespace=args.namespace,
            server_port=ini.LISTEN_PORT,
            ca_secret_name=args.tls_secret_name,  # clients verify PgBouncer, whose certificate is the pooler's
        )
        self.scrape_target = ScrapeTarget(
            job=SCRAPE_JOB, namespace=args.namespace, pod_labels=self.pod_labels, port_name=EXPORTER_PORT_NAME
        )
        self.register_outputs({
            "connection": registrable(self.connection),
            "deployments": self.deployments,
            "services": self.services,
            "scrape_target": registrable(self.scrape_target),
            "scale_targets": {path: registrable(target) for path, target in self.scale_targets.items()},
            "pod_labels": self.pod_labels,
        })

    # -- helpers -------------------------------------------------------------------------------

    def _metadata(self, name: str | None = None) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=self._args.namespace, labels=dict(self._labels))

    def _selector(self, path: Path) -> dict[str, str]:
        return {**self.pod_labels, PATH_LABEL: path}

    def _fqdn(self, service: k8s.core.v1.Service) -> pulumi.Output[str]:
        return pulumi.Output.concat(service.metadata.name, ".", service.metadata.namespace, ".svc.cluster.local")

    def _deployment(
        self, path: Path, pool: ini.PoolSettings, config_map: k8s.core.v1.ConfigMap, text: pulumi.Output[str]
    ) -> k8s.apps.v1.Deployment:
        args = self._args
        selector = self._selector(path)
        labels = merge_pod_labels("pooler", {**self._labels, PATH_LABEL: path}, args.database.client_labels)
        template = k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                labels=labels, annotations={CONFIG_CHECKSUM_ANNOTATION: text.apply(config_checksum)}
            ),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[self._pgbouncer_container(), self._exporter_container()],
                volumes=self._volumes(path, config_map),
                security_context=pod_security_context(run_as_user=PGBOUNCER_UID, fs_group=PGBOUNCER_GID),
                automount_service_account_token=False,
                enable_service_links=False,
                termination_grace_period_seconds=args.termination_grace_seconds,
                topology_spread_constraints=[
                    k8s.core.v1.TopologySpreadConstraintArgs(
                        max_skew=1,
                        topology_key=key,
                        when_unsatisfiable="ScheduleAnyway",
                        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                        match_label_keys=["pod-template-hash"],
                    )
                    for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
                ],
            ),
        )
        return k8s.apps.v1.Deployment(
            f"{self._name}-{path}",
            metadata=self._metadata(),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=pool.instances,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
                ),
                revision_history_limit=5,
                template=template,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["spec.replicas"] if args.autoscaling is not None else None
            ),
        )

    def _pgbouncer_container(self) -> k8s.core.v1.ContainerArgs:
        args = self._args

        def tcp(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
            return k8s.core.v1.ProbeArgs(
                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=PORT_NAME),
                period_seconds=period,
                timeout_seconds=3,
                failure_threshold=failures,
            )

        mounts = [
            k8s.core.v1.VolumeMountArgs(name="config", mount_path=ini.CONFIG_DIR + "/" + ini.CONFIG_FILE,
                                        sub_path=ini.CONFIG_FILE, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="auth", mount_path=ini.AUTH_DIR, read_only=True),
        ]
        if args.tls_secret_name is not None:
            mounts.append(k8s.core.v1.VolumeMountArgs(name="tls", mount_path=ini.TLS_DIR, read_only=True))
        return k8s.core.v1.ContainerArgs(
            name=POOLER_CONTAINER,
            image=args.image,
            image_pull_policy="IfNotPresent",
            command=["/usr/bin/pgbouncer", f"{ini.CONFIG_DIR}/{ini.CONFIG_FILE}"],
            ports=[k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=ini.LISTEN_PORT, protocol="TCP")],
            startup_probe=tcp(period=2, failures=30),
            liveness_probe=tcp(period=10, failures=3),
            readiness_probe=tcp(period=5, failures=2),
            lifecycle=k8s.core.v1.LifecycleArgs(
                pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                    exec_=k8s.core.v1.ExecActionArgs(command=["/bin/sh", "-c", PRE_STOP])
                )
            ),
            resources=args.resources.to_args(),
            security_context=container_security_context(),
            volume_mounts=mounts,
            termination_message_policy="FallbackToLogsOnError",
        )

    def _exporter_container(self) -> k8s.core.v1.ContainerArgs:
        args = self._args
        # No password in it: lib/pq takes it from PGPASSWORD, which exporter_command exports from the file.
        # With TLS PgBouncer refuses plaintext, loopback too: encrypted, unverified (see the module docstring).
        sslmode = "require" if args.tls_secret_name is not None else "disable"
        connection = f"postgres://{args.lookup.role}@127.0.0.1:{ini.LISTEN_PORT}/pgbouncer?sslmode={sslmode}"
        probe = k8s.core.v1.HTTPGetActionArgs(path="/", port=EXPORTER_PORT_NAME)
        return k8s.core.v1.ContainerArgs(
            name=EXPORTER_CONTAINER,
            image=args.exporter_image,
            image_pull_policy="IfNotPresent",
            command=exporter_command(),
            args=[f"--web.listen-address=:{EXPORTER_PORT}"],
            env=[k8s.core.v1.EnvVarArgs(name="PGBOUNCER_EXPORTER_CONNECTION_STRING", value=connection)],
            ports=[k8s.core.v1.ContainerPortArgs(name=EXPORTER_PORT_NAME, container_port=EXPORTER_PORT, protocol="TCP")],
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=20, timeout_seconds=5, failure_threshold=3),
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=10, timeout_seconds=5, failure_threshold=3),
            resources=args.exporter_resources.to_args(),
            security_context=container_security_context(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="stats-password", mount_path=EXPORTER_SECRET_DIR, read_only=True)
            ],
            termination_message_policy="FallbackToLogsOnError",
        )

    def _volumes(self, path: Path, config_map: k8s.core.v1.ConfigMap) -> list[k8s.core.v1.VolumeArgs]:
        args = self._args
        volumes = [
            k8s.core.v1.VolumeArgs(
                name="config",
                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                    name=config_map.metadata.name,
                    items=[k8s.core.v1.KeyToPathArgs(key=f"{path}.ini", path=ini.CONFIG_FILE)],
                ),
            ),
            k8s.core.v1.VolumeArgs(
                name="auth",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=args.lookup.secret_name,
                    default_mode=0o440,
                    items=[k8s.core.v1.KeyToPathArgs(key=USERLIST_KEY, path="userlist.txt")],
                ),
            ),
            # The exporter's own mount of the same Secret: the password only (PgBouncer gets the userlist only).
            k8s.core.v1.VolumeArgs(
                name="stats-password",
                secret=k8s.core.v1.SecretVolumeSourceArgs(
                    secret_name=args.lookup.secret_name,
                    default_mode=0o440,
                    items=[k8s.core.v1.KeyToPathArgs(key=PASSWORD_KEY, path=PASSWORD_KEY)],
                ),
            ),
        ]
        if args.tls_secret_name is not None:
            assert args.database.ca_secret_name is not None  # check_tls: a pooler certificate needs database TLS
            volumes.append(pooler_tls.tls_volume(
                "tls", tls_secret_name=args.tls_secret_name, database_ca_secret_name=args.database.ca_secret_name
            ))
        return volumes

    def _service(self, path: Path) -> k8s.core.v1.Service:
        """Auto-named, except with TLS: the pooler's certificate names the Services, so their names are fixed."""
        fixed = pooler_tls.service_names(self._name)[path] if self._args.tls_secret_name is not None else None
        return k8s.core.v1.Service(
            f"{self._name}-{path}",
            metadata=self._metadata(fixed),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=self._selector(path),
                ports=[k8s.core.v1.ServicePortArgs(
                    name="postgresql", port=self._args.database.port, target_port=PORT_NAME, protocol="TCP"
                )],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _certificate(self, issuer: TlsIssuer) -> k8s.apiextensions.CustomResource:
        """A cert-manager Certificate for the pooler's Services, written to ``tls_secret_name`` (with ``ca.crt``)."""
        args = self._args
        assert args.tls_secret_name is not None  # check_tls: an issuer needs the Secret it writes
        dns_names = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: pooler_tls.certificate_dns_names(self._name, ns)
        )
        return k8s.apiextensions.CustomResource(
            f"{self._name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=self._metadata(),
            spec=pooler_tls.certificate_spec(
                secret_name=args.tls_secret_name, name=self._name, dns_names=dns_names, issuer=issuer
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _disruption_budget(self, path: Path) -> k8s.policy.v1.PodDisruptionBudget:
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-{path}-pdb",
            metadata=self._metadata(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self._selector(path)),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        """Ingress: database clients to PgBouncer, scrapers to the exporter. Egress stays open (DNS, database)."""
        clients = k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self._args.database.client_labels))
        )
        return ingress_policy(
            f"{self._name}-netpol",
            metadata=self._metadata(),
            pod_labels=self.pod_labels,
            rules=[([clients], [ini.LISTEN_PORT]), ([scraper_peer(self._args.monitoring_namespace)], [EXPORTER_PORT])],
            opts=pulumi.ResourceOptions(parent=self),
        )

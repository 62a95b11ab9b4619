"""TimescaleDB on Kubernetes, highly available through Patroni and its Kubernetes DCS.

Shape (modelled on Timescale's timescaledb-single chart, with its known outages designed out):

* One StatefulSet of ``timescale/timescaledb-ha`` pods, each running Patroni. Any replica count forms
  one cluster: new pods (scale-up) find the initialized cluster in the DCS and ``pg_basebackup`` from
  the primary by themselves. Replicas stream with replication slots, one of them synchronously (``synchronous_mode``).
* Read-write routing is the leader lock itself. Patroni's Kubernetes DCS runs in Endpoints mode: the
  lock is the Endpoints object ``<name>``, and whoever takes or renews the lock writes its own pod IP
  into it in the same compare-and-swap request. The read-write Service is named ``<name>`` and has no
  selector, so it routes to that address and nothing else: never to two pods, never to a pod that lost
  the lock, whatever state a dead pod's labels or readiness are left in (with a label selector, a dead
  node's primary kept ``role=primary`` and stayed Ready, so writes went to two addresses for 14 s).
  Trade-offs: (1) while the lock holder is dead and its lock not yet expired, the Service still points
  at it (connections fail) for up to ``ttl``; no other design can know sooner without risking two
  primaries; (2) Patroni needs create/patch on Endpoints (not Services: the component creates the
  ``<name>-config`` Service that keeps Patroni's config Endpoints alive, so Patroni's one attempt to
  create it at start-up ends in a 403 that Patroni ignores by design); (3) the core/v1 Endpoints API is
  deprecated in favour of EndpointSlices since Kubernetes 1.33, but still served, and the
  EndpointSlice mirroring controller publishes Patroni's Endpoints to kube-proxy; (4) the Service's
  name is fixed (``<name>``), where it used to be auto-named. Pods still carry ``role=primary|replica``
  labels for humans and dashboards; they are informational only.
* Failure detection (``patroni_timing``): ttl 20 s (Patroni's minimum), loop 5 s, retry 7 s. A silent
  primary's lock expires ttl after its last renewal, so it is replaced 15-20 s after it went silent
  (plus about a second of election); a gracefully stopped one hands over within seconds, and one whose
  processes died in a living pod is restarted by the kubelet and recovered in place (it still holds
  the lock). Lower values fail over sooner but demote the primary on shorter API-server outages.
* The read-only Service selects ``role=replica`` when ``replicas > 1``; the readiness probe keeps a
  replica in it while its PostgreSQL runs within 32MiB of the leader's last WAL, including while a
  dead primary is being replaced (``pod.py``). With one member there are no replicas, so it selects
  every member (the primary): read-only clients keep working and move to replicas automatically once
  the StatefulSet is scaled out and the component is updated.
* PostgreSQL parameters come from ``components.timescaledb.tuning`` (timescaledb-tune's rules) for the container's
  CPU/memory and the WAL disk, then ``postgresql_parameters`` overrides. max_wal_size is sized from the
  WAL volume, or, without one, from a quarter of the data volume; ``max_slot_wal_keep_size`` caps WAL
  kept for a dead replica, so WAL cannot fill the disk (the chart's most common outage).
* Database bootstrap uses Patroni's ``bootstrap.post_init`` (script in the ConfigMap, passwords read
  from a secret volume). Chosen over an init Job because it runs exactly once, on the primary, inside
  the bootstrap Patroni already serializes, before any client can connect, with no extra pod, no extra
  network path and no race against Services becoming ready. Roles, database, grants and
  ``CREATE EXTENSION timescaledb`` therefore exist as soon as the first member is ready. Passwords are
  sent as SCRAM verifiers computed in the pod (``scram.py``), never as cleartext SQL. Changing
  ``database``/users later does not re-run it (documented limitation; rename by SQL).
* What changes after bootstrap is applied without rolling the pods: cluster-wide DCS parameters (and the
  restarts they need) by the Reconciler component's Job from ``reconcile_target``; rotated passwords and
  extension versions by the role agent sidecar (``role_agent.py``) over the pod's socket, on the primary,
  so the superuser needs no network login. Pods roll only when what a running member reads changes (the
  Patroni file without ``bootstrap``, the pod spec).

Data safety on updates and deletes:

* The StatefulSet has a fixed name (the component name), so PVCs are ``data-<name>-<n>``. Its
  ``persistentVolumeClaimRetentionPolicy`` is Retain/Retain: PVCs survive deletion and scale-down.
* A change to an immutable StatefulSet field (volumeClaimTemplates, selector, serviceName) makes
  pulumi-kubernetes replace it; because the name is fixed, the provider must delete before it
  re-creates (create-before-delete would collide on the name). Without ``protect`` that is a short
  outage, never data loss: the new StatefulSet reattaches the retained PVCs by name, and Patroni
  restarts on the same data. With ``protect=True`` Pulumi refuses the replacement (and any delete)
  outright, so a production stack cannot even suffer the outage without an explicit unprotect.
* ``protect=True`` also sets ``retain_on_delete`` on the StatefulSet, the Secrets, the passwords and
  the ConfigMap: ``pulumi destroy`` (after unprotecting) leaves them in the cluster.
* ``autoscaled=True`` adds ``ignore_changes=["spec.replicas"]`` so ``pulumi up`` never fights the HPA.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from ..pooler import auth as pooler_auth
from ..pooler.auth import LookupCredentials
from . import backup as br
from . import patroni_config as pc
from . import pod, role_agent
from .checks import MAX_NAME_LENGTH, MAX_REPLICAS, check_args, check_pod_network_cidrs  # noqa: F401 (re-exported)
from .exporter_queries import queries_file
from ..shared import scram
from ..shared.certificates import server_certificate_spec
from ..shared.images import image_version
from ..shared.labels import recommended_labels, selector_labels
from ..shared.network import ingress_policy, namespace_peer, scraper_peer
from .tuning import TuneInput, tune
from ..shared.quantity import byte_size
from .credentials import (
    RolePassword,
    connection_data,
    opaque_secret,
    role_password,
    source_password,
)
from ..shared.types import (
    ConnectionSecretKeys,
    DatabaseConnection,
    ReconcileTarget,
    Resources,
    ScaleTarget,
    ScrapeTarget,
    SecretFile,
    registrable,
)

DEFAULT_IMAGE = (
    "timescale/timescaledb-ha:pg17.11-ts2.30.1@sha256:3e3440ab4c2aa585e743b1d8466cda9bbf18b6c598ec7806cf61e02fa5cd1d1a"
)
"""PostgreSQL 17.11, TimescaleDB 2.30.1; the digest pins the build (the kubelet pulls by digest, the tag documents it)."""
DEFAULT_EXPORTER_IMAGE = (
    "quay.io/prometheuscommunity/postgres-exporter:v0.17.1@sha256:38606faa38c54787525fb0ff2fd6b41b4cfb75d455c1df294927c5f611699b17"
)
DEFAULT_POSTGRES_MAJOR = 17
SCRAM_SOURCE = Path(scram.__file__).read_text(encoding="utf-8")
"""``components/shared/scram.py``, mounted beside post_init so bootstrap sends verifiers, not passwords."""
DEFAULT_POD_NETWORK_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
APP_NAME = "timescaledb"
COMPONENT = "database"
ENDPOINTS_OWNER_ANNOTATION = "timescale-k8s.io/endpoints-managed-by"
"""On Services without a selector: who writes their Endpoints (Patroni, for the leader and config keys)."""


@dataclass(frozen=True, kw_only=True)
class StorageArgs:
    """Persistent volumes of each member."""

    data_size: str = "10Gi"
    """Size of the data volume; default ``10Gi``."""
    storage_class: str | None = None
    """StorageClass of both volumes; default None (the cluster's default class)."""
    wal_size: str | None = None
    """Size of a separate WAL volume; default None (pg_wal on the data volume)."""


@dataclass(frozen=True, kw_only=True)
class TimescaleDBArgs:
    """Inputs of :class:`TimescaleDB`."""

    namespace: pulumi.Input[str]
    """Namespace of every object; required."""
    replicas: int = 1
    """Cluster members (one primary, the rest streaming replicas); default 1. The HPA floor when autoscaled."""
    image: str = DEFAULT_IMAGE
    """timescaledb-ha image pinned by a full ``pg<X.Y>-ts<A.B.C>`` tag or a digest (Patroni 4); default
    ``timescale/timescaledb-ha:pg17.11-ts2.30.1@sha256:3e34...``."""
    exporter_image: str = DEFAULT_EXPORTER_IMAGE
    """postgres_exporter image pinned by a full version tag or digest; default ``...postgres-exporter:v0.17.1@sha256:3860...``."""
    postgres_major: int = DEFAULT_POSTGRES_MAJOR
    """PostgreSQL major version of the data directory; default 17. The image must be of this major: in-place
    major upgrades are not supported, so an image of another major is refused."""
    resources: Resources = field(default_factory=lambda: Resources(cpu_request="1", memory_request="2Gi"))
    """PostgreSQL container resources (tuning follows them); default 1 CPU / 2Gi, memory limit = request."""
    exporter_resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="50m", memory_request="64Mi", memory_limit="128Mi")
    )
    """Exporter sidecar resources; default 50m / 64Mi (limit 128Mi)."""
    role_agent_resources: Resources = field(default_factory=lambda: role_agent.DEFAULT_RESOURCES)
    """Role agent sidecar resources (role passwords, extension updates); default 10m / 64Mi (limit 128Mi)."""
    storage: StorageArgs = field(default_factory=StorageArgs)
    """Volumes; default 10Gi data, cluster default StorageClass, WAL on the data volume."""
    database: str = "app"
    """Application database (TimescaleDB extension created in it); default ``app``."""
    app_user: str = "app"
    """Read-write owner of the database; default ``app``."""
    reader_user: str = "reader"
    """Read-only role (SELECT on the application database's public schema, now and later), e.g. for Grafana; default ``reader``."""
    postgresql_parameters: Mapping[str, str] = field(default_factory=dict)
    """PostgreSQL parameter overrides, winning over tuning; default none."""
    anti_affinity: Literal["preferred", "required"] = "preferred"
    """Spread members over nodes as a preference or a hard rule; default ``preferred``."""
    autoscaled: bool = False
    """An HPA owns the replica count (``ignore_changes=["spec.replicas"]``); default False. Needs ``max_replicas``."""
    max_replicas: int | None = None
    """Most members the cluster can grow to (the HPA's ``maxReplicas`` when autoscaled; at least ``replicas``):
    Patroni's Role may patch exactly these pods. Default None: ``replicas``; required when ``autoscaled``."""
    protect: bool = False
    """protect + retain_on_delete on StatefulSet, Secrets, ConfigMap and passwords; default False."""
    monitoring_namespace: str | None = None
    """Namespace allowed to scrape metrics (and reach 5432 with client labels); default None: same namespace."""
    client_namespaces: Sequence[str] = ()
    """Further namespaces whose client-labelled pods may reach 5432 (e.g. Grafana's); default none."""
    termination_grace_seconds: int = 60
    """Seconds a member gets to checkpoint and hand over leadership on shutdown; default 60."""
    max_connections: int | None = None
    """max_connections for tuning (like timescaledb-tune --max-conns); default None: memory step (25..100)."""
    pod_network_cidrs: Sequence[str] = DEFAULT_POD_NETWORK_CIDRS
    """Pod networks (IPv4 and/or IPv6 CIDRs) replication may come from (pg_hba); default the RFC 1918 ranges."""
    patroni_timing: pc.PatroniTiming = field(default_factory=pc.PatroniTiming)
    """Patroni ttl / loop_wait / retry_timeout; default 20 / 5 / 7 seconds (see ``PatroniTiming``)."""
    synchronous_mode: Literal["off", "on", "strict"] = "on"
    """Synchronous replication (``patroni_config.SYNCHRONOUS_MODES``): ``on`` (default) loses no acknowledged
    commit to a failover while a standby streams; ``strict`` also stops writes while none does; ``off``."""
    allow_unsafe: Sequence[str] = ()
    """Guarded parameters (``checks.GUARDED``) whose unsafe values are accepted anyway, with a warning; default none."""
    tls_secret_name: str | None = None
    """A ``kubernetes.io/tls`` Secret with ``tls.crt``, ``tls.key`` and ``ca.crt`` turning on server TLS: the
    network then takes TLS only and every client verifies the server (``verify-full``); the certificate must
    name :func:`certificate_dns_names`. Default None: no TLS."""
    tls_issuer: TlsIssuer | None = None
    """A cert-manager issuer: the component creates a ``Certificate`` writing ``tls_secret_name`` (required with
    it) for :func:`certificate_dns_names`; default None (the Secret is made by someone else)."""
    pooler_lookup: bool = False
    """Create PgBouncer's auth_query lookup role and function at bootstrap and a Secret with the role's
    credentials for a ``Pooler`` (``pooler_lookup`` output); default False. Created by the bootstrap on a new
    cluster and by the role agent on a running one (turning it on later needs no SQL by hand)."""
    backup: br.BackupArgs | None = None
    """pgBackRest WAL archiving, scheduled backups, restore or standby (``components.timescaledb.backup``);
    default None: no archiving and no backups."""
    source_passwords: pulumi.Input[Mapping[str, str]] | None = None
    """The database roles' passwords (role name → password) of the cluster whose data this one holds: a standby
    cluster's data is its source's, roles and passwords included, so its replicas, Patroni and clients must use
    the source's (pass the source's ``role_passwords`` output, e.g. through a ``StackReference``) and keep them
    after a promotion (then without ``backup.standby``). Required with ``backup.standby`` unless
    ``standby.source_uses_our_passwords``. Default
    None: generated (the REST API password is always generated: it is not in the data)."""


@dataclass(frozen=True, kw_only=True)
class TlsIssuer:
    """The cert-manager issuer that signs the server certificate."""

    name: str
    """Issuer name; required."""
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    """``Issuer`` (in the namespace) or ``ClusterIssuer``; default ``Issuer``."""


def statefulset_name(name: str) -> str:
    """The fixed StatefulSet name, also Patroni's scope (one place derives it)."""
    return name


def service_names(name: str) -> dict[str, str]:
    """Fixed Service names (used with TLS, where the certificate must name them), by role. The read-write
    Service always has its fixed name: Patroni's leader Endpoints, the cluster's scope."""
    return {"primary": statefulset_name(name), **{role: f"{name}-{role}" for role in ("replicas", "headless")}}


def certificate_dns_names(name: str, namespace: str) -> list[str]:
    """Names the server certificate must hold: both client Services and the headless one (the reconciler's and
    Prometheus's name for Patroni's REST API), short and fully qualified, and every member under the headless
    Service (members connect to each other, and the exporter to its own member)."""
    names = service_names(name)
    return [
        *(f"{names[role]}.{namespace}.svc{suffix}" for role in ("primary", "replicas", "headless")
          for suffix in ("", ".cluster.local")),
        f"*.{names['headless']}.{namespace}.svc.cluster.local",
    ]


def client_labels_for(name: str) -> dict[str, str]:
    """Labels a client pod must carry to reach PostgreSQL through the NetworkPolicy."""
    return {f"timescale-k8s.io/{name}-client": "true"}


def wal_disk_bytes(storage: StorageArgs) -> int:
    """Disk tuning sizes WAL against: the WAL volume, else a quarter of the data volume."""
    if storage.wal_size is not None:
        return byte_size(storage.wal_size, field="storage.wal_size")
    return byte_size(storage.data_size, field="storage.data_size") // 4


def postgresql_parameters(args: TimescaleDBArgs) -> dict[str, str]:
    """Base settings, then tuning for the container and WAL disk, then the user's overrides."""
    tuned = tune(
        TuneInput(
            memory_bytes=args.resources.memory_bytes,
            cpus=args.resources.cpu_cores,
            wal_disk_bytes=wal_disk_bytes(args.storage),
            max_connections=args.max_connections,
        )
    )
    tls = pc.TLS_PARAMETERS if args.tls_secret_name is not None else {}
    return {**pc.BASE_PARAMETERS, **tuned, **tls, **args.postgresql_parameters}


class TimescaleDB(pulumi.ComponentResource):
    """A Patroni-managed TimescaleDB cluster with Services, credentials, metrics and network policy."""

    app_connection: DatabaseConnection
    reader_connection: DatabaseConnection
    client_labels: dict[str, str]
    statefulset: k8s.apps.v1.StatefulSet
    scale_target: ScaleTarget
    scrape_targets: list[ScrapeTarget]
    pod_labels: dict[str, str]
    port: int
    primary_service_name: pulumi.Output[str]
    replica_service_name: pulumi.Output[str]
    headless_service_name: pulumi.Output[str]
    superuser_secret_name: pulumi.Output[str]
    app_password: pulumi.Output[str]
    reader_password: pulumi.Output[str]
    """The read-only role's password (secret): for a consumer in another namespace, which cannot reference
    the reader Secret, to store in its own Secret."""
    pooler_lookup: LookupCredentials | None
    """The pooler lookup role's credentials when ``pooler_lookup`` is set, else None."""
    role_passwords: pulumi.Output[dict[str, str]]
    """Every database role's password by role name (secret): a standby cluster of this one takes it as its
    ``source_passwords``."""
    backup_max_age_seconds: int | None
    """Longest gap the backup schedules allow (None without backups): what the backup-age alert allows."""
    reconcile_target: ReconcileTarget

    def __init__(self, name: str, args: TimescaleDBArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_args(name, args)  # every rule: checks.py
        super().__init__("timescale-k8s:index:TimescaleDB", name, None, opts)
        self._name = name
        self._args = args
        version = image_version(args.image)
        self.pod_labels = selector_labels(app=APP_NAME, instance=name, component=COMPONENT)
        self._labels = recommended_labels(app=APP_NAME, instance=name, component=COMPONENT, version=version)
        self.client_labels = client_labels_for(name)
        self.port = pc.POSTGRES_PORT
        scope = statefulset_name(name)

        headless = self._service("headless", headless=True, selector=self.pod_labels)
        primary = self._leader_service(scope)
        for suffix in pc.KEEPER_SUFFIXES:
            self._keeper_service(scope, suffix)
        read_only_selector = (
            {**self.pod_labels, pc.ROLE_LABEL: pc.FOLLOWER_LABEL_VALUE} if args.replicas > 1 else self.pod_labels
        )
        replicas = self._service("replicas", selector=read_only_selector)
        if args.tls_issuer is not None:
            self._certificate(args.tls_issuer)
        primary_host = self._fqdn(primary)
        replica_host = self._fqdn(replicas)

        self._database_roles: list[RolePassword] = []
        passwords = {
            purpose: self._database_password(purpose, role)
            for purpose, role in (("superuser", pc.SUPERUSER), ("replication", pc.REPLICATION_USER),
                                  ("rewind", pc.REWIND_USER), ("monitor", pc.MONITOR_USER),
                                  ("app", args.app_user), ("reader", args.reader_user))
        }
        passwords["restapi"] = role_password(f"{name}-restapi-password", pc.RESTAPI_USER, self._opts(protected=True))
        superuser_secret = self._connection_secret("superuser", passwords["superuser"], primary_host, "postgres")
        app_secret = self._connection_secret("app", passwords["app"], primary_host, args.database)
        reader_secret = self._connection_secret("reader", passwords["reader"], replica_host, args.database)
        internal_secret = opaque_secret(
            f"{name}-internal",
            namespace=args.namespace,
            labels=self._labels,
            data={
                pod.REPLICATION_KEY: passwords["replication"].password,
                pod.REWIND_KEY: passwords["rewind"].password,
                pod.RESTAPI_KEY: passwords["restapi"].password,
                pod.MONITOR_KEY: passwords["monitor"].password,
            },
            opts=self._opts(protected=True),
        )

        self.pooler_lookup = self._pooler_lookup() if args.pooler_lookup else None
        self.role_passwords = self._role_passwords_output()

        managed_roles = (
            role_agent.ManagedRole(args.app_user, SecretFile(secret_name=app_secret.metadata.name, key=ConnectionSecretKeys.PASSWORD)),
            role_agent.ManagedRole(args.reader_user, SecretFile(secret_name=reader_secret.metadata.name,
                                                                key=ConnectionSecretKeys.PASSWORD)),
            role_agent.ManagedRole(pc.MONITOR_USER, SecretFile(secret_name=internal_secret.metadata.name, key=pod.MONITOR_KEY)),
            role_agent.ManagedRole(pc.REPLICATION_USER, SecretFile(secret_name=internal_secret.metadata.name,
                                                                   key=pod.REPLICATION_KEY), create_options="LOGIN REPLICATION"),
        )
        lookup = role_agent.PoolerLookup(
            verifier=SecretFile(secret_name=self.pooler_lookup.secret_name, key=pooler_auth.VERIFIER_KEY),
            database=args.database, excluded_roles=tuple(sorted(pc.RESERVED_ROLES)),
        ) if self.pooler_lookup else None
        agent_tls = role_agent.ServerTls(
            tls_secret=args.tls_secret_name,
            restapi_password=SecretFile(secret_name=internal_secret.metadata.name, key=pod.RESTAPI_KEY),
        ) if args.tls_secret_name else None
        config_text, script_text = self._patroni_files(scope)
        exporter_queries = queries_file()
        backup_files = self._backup_files()
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-patroni",
            metadata=self._metadata(),
            data={
                pod.CONFIG_KEY: config_text,
                pod.POST_INIT_KEY: script_text,
                pod.SCRAM_KEY: SCRAM_SOURCE,
                pod.EXPORTER_QUERIES_KEY: exporter_queries,
                **backup_files,
                **role_agent.config_map_data(
                    role_agent.declaration(managed_roles, postgres_major=args.postgres_major, lookup=lookup, tls=agent_tls)
                ),
            },
            opts=self._opts(protected=True),
        )
        service_account = self._rbac(scope)

        self.statefulset = self._statefulset(
            scope,
            headless,
            pod.PodRefs(
                service_account=service_account.metadata.name,
                config_map=config_map.metadata.name,
                superuser_secret=superuser_secret.metadata.name,
                internal_secret=internal_secret.metadata.name,
                app_secret=app_secret.metadata.name,
                reader_secret=reader_secret.metadata.name,
                pooler_lookup_secret=self.pooler_lookup.secret_name if self.pooler_lookup else None,
            ),
            managed_roles,
            lookup,
            agent_tls,
            # What a running member reads at start (not the bootstrap section, which the reconciler applies
            # without rolling the pods), plus the exporter's queries and the backup agent's files; not the role
            # agent's program and declaration, which it re-reads in place.
            checksum=hashlib.sha256(
                "".join([pc.running_member_view(config_text), exporter_queries, *backup_files.values()]).encode()
            ).hexdigest(),
        )
        if args.replicas > 1 or args.autoscaled:
            self._disruption_budget()
        self._network_policy()

        connection = functools.partial(
            DatabaseConnection,
            read_write_host=primary_host,
            read_only_host=replica_host,
            port=self.port,
            database=args.database,
            client_labels=self.client_labels,
            server_pod_labels=self.pod_labels,
            server_namespace=args.namespace,
            ca_secret_name=args.tls_secret_name,
        )
        self.app_connection = connection(user=args.app_user, secret_name=app_secret.metadata.name)
        self.reader_connection = connection(user=args.reader_user, secret_name=reader_secret.metadata.name)
        self.scale_target = ScaleTarget.of(
            self.statefulset,
            container_resources=[
                args.resources, args.exporter_resources, args.role_agent_resources,
                *([args.backup.agent_resources] if args.backup else []),
            ],
            min_replicas_floor=args.replicas,
            stateful=True,
        )
        self.scrape_targets = [
            ScrapeTarget(job="postgres-exporter", namespace=args.namespace, pod_labels=self.pod_labels, port_name="exporter"),
            ScrapeTarget(job="patroni", namespace=args.namespace, pod_labels=self.pod_labels, port_name="patroni",
                         https_ca_secret=args.tls_secret_name,
                         https_server_name=pulumi.Output.concat(service_names(name)["headless"], ".", args.namespace, ".svc")
                         if args.tls_secret_name else None),
        ]
        if args.backup is not None:
            self.scrape_targets.append(ScrapeTarget(
                job="pgbackrest", namespace=args.namespace, pod_labels=self.pod_labels, port_name=br.AGENT_PORT_NAME
            ))
        self.backup_max_age_seconds = br.max_backup_interval_seconds(args.backup) if args.backup else None
        self.primary_service_name = primary.metadata.name
        self.replica_service_name = replicas.metadata.name
        self.headless_service_name = headless.metadata.name
        self.superuser_secret_name = superuser_secret.metadata.name
        self.app_password = pulumi.Output.secret(passwords["app"].password)
        self.reader_password = pulumi.Output.secret(passwords["reader"].password)
        self.reconcile_target = ReconcileTarget(
            name=name,
            namespace=args.namespace,
            image=args.image,
            run_as_user=pod.POSTGRES_UID,
            pod_labels=self.pod_labels,
            patroni_url=pulumi.Output.concat("https://" if args.tls_secret_name else "http://", headless.metadata.name, ".", headless.metadata.namespace,
                                             f".svc.cluster.local:{pc.PATRONI_PORT}"),
            postgres_port=pc.POSTGRES_PORT,
            patroni_port=pc.PATRONI_PORT,
            restapi_user=pc.RESTAPI_USER,
            restapi_password=SecretFile(secret_name=internal_secret.metadata.name, key=pod.RESTAPI_KEY),
            settings_user=pc.MONITOR_USER,
            settings_password=SecretFile(secret_name=internal_secret.metadata.name, key=pod.MONITOR_KEY),
            settings_database=args.database,
            ca_secret_name=args.tls_secret_name,
            dcs_parameters=pc.split_parameters(postgresql_parameters(args))[0],
            managed_dcs_parameters=sorted(pc.DCS_ONLY_PARAMETERS),
            dcs_settings=pc.synchronous_dcs(args.synchronous_mode),
            ready=self.statefulset,
        )
        self.register_outputs({
            "app_connection": registrable(self.app_connection),
            "reader_connection": registrable(self.reader_connection),
            "client_labels": self.client_labels,
            "statefulset": self.statefulset,
            "scale_target": registrable(self.scale_target),
            "scrape_targets": [registrable(target) for target in self.scrape_targets],
            "pod_labels": self.pod_labels,
            "port": self.port,
            "primary_service_name": self.primary_service_name,
            "replica_service_name": self.replica_service_name,
            "headless_service_name": self.headless_service_name,
            "superuser_secret_name": self.superuser_secret_name,
            "app_password": self.app_password,
            "reader_password": self.reader_password,
            "pooler_lookup": (
                {"role": self.pooler_lookup.role, "secret_name": self.pooler_lookup.secret_name}
                if self.pooler_lookup else None
            ),
            "backup_max_age_seconds": self.backup_max_age_seconds,
        })

    # -- helpers -------------------------------------------------------------------------------

    def _opts(self, *, protected: bool = False, ignore_changes: list[str] | None = None) -> pulumi.ResourceOptions:
        """Child options: parented; data-bearing children get protect + retain_on_delete when asked."""
        keep = protected and self._args.protect
        return pulumi.ResourceOptions(parent=self, protect=keep, retain_on_delete=keep, ignore_changes=ignore_changes)

    def _metadata(self, name: str | None = None) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=self._args.namespace, labels=dict(self._labels))

    def _fqdn(self, service: k8s.core.v1.Service) -> pulumi.Output[str]:
        return pulumi.Output.concat(service.metadata.name, ".", service.metadata.namespace, ".svc.cluster.local")

    def _service(self, role: str, *, selector: Mapping[str, str], headless: bool = False) -> k8s.core.v1.Service:
        """Auto-named, except with TLS: the certificate names the Services, so their names are fixed."""
        ports = [k8s.core.v1.ServicePortArgs(name="postgresql", port=pc.POSTGRES_PORT, target_port="postgresql", protocol="TCP")]
        if headless:
            ports.append(k8s.core.v1.ServicePortArgs(name="patroni", port=pc.PATRONI_PORT, target_port="patroni", protocol="TCP"))
        fixed = service_names(self._name)[role] if self._args.tls_secret_name is not None else None
        return k8s.core.v1.Service(
            f"{self._name}-{role}",
            metadata=self._metadata(fixed),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                cluster_ip="None" if headless else None,
                publish_not_ready_addresses=True if headless else None,
                selector=dict(selector),
                ports=ports,
            ),
            opts=self._opts(),
        )

    def _leader_service(self, scope: str) -> k8s.core.v1.Service:
        """The read-write Service: named like Patroni's leader Endpoints, no selector (the lock routes)."""
        return k8s.core.v1.Service(
            f"{self._name}-primary",
            metadata=self._patroni_owned_metadata(scope),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                ports=[k8s.core.v1.ServicePortArgs(
                    name=pc.LEADER_PORT_NAME, port=pc.POSTGRES_PORT, target_port=pc.POSTGRES_PORT, protocol="TCP"
                )],
            ),
            opts=self._opts(),
        )

    def _keeper_service(self, scope: str, suffix: str) -> k8s.core.v1.Service:
        """Keeps Patroni's ``<scope><suffix>`` Endpoints from being garbage-collected; routes nothing."""
        return k8s.core.v1.Service(
            f"{self._name}-patroni{suffix}",
            metadata=self._patroni_owned_metadata(scope + suffix),
            spec=k8s.core.v1.ServiceSpecArgs(cluster_ip="None"),
            opts=self._opts(),
        )

    def _patroni_owned_metadata(self, name: str) -> k8s.meta.v1.ObjectMetaArgs:
        """A fixed name Patroni's Endpoints share; Pulumi must not wait for endpoints only Patroni writes."""
        return k8s.meta.v1.ObjectMetaArgs(
            name=name,
            namespace=self._args.namespace,
            labels=dict(self._labels),
            annotations={ENDPOINTS_OWNER_ANNOTATION: "patroni", "pulumi.com/skipAwait": "true"},
        )

    def _connection_secret(
        self, role: str, credentials: RolePassword, host: pulumi.Output[str], database: str
    ) -> k8s.core.v1.Secret:
        return opaque_secret(
            f"{self._name}-{role}",
            namespace=self._args.namespace,
            labels=self._labels,
            data=connection_data(credentials=credentials, host=host, port=pc.POSTGRES_PORT, database=database),
            opts=self._opts(protected=True),
        )

    def _patroni_files(self, scope: str) -> tuple[str, str]:
        args = self._args
        config = pc.build_patroni_config(
            pc.PatroniSettings(
                scope=scope,
                kubernetes_labels=self.pod_labels,
                parameters=postgresql_parameters(args),
                pod_network_cidrs=args.pod_network_cidrs,
                separate_wal=args.storage.wal_size is not None,
                tls=args.tls_secret_name is not None,
                timing=args.patroni_timing,
                synchronous_mode=args.synchronous_mode,
            )
        )
        script = pc.post_init_script(
            pc.BootstrapRoles(database=args.database, app_user=args.app_user, reader_user=args.reader_user,
                              pooler_lookup=args.pooler_lookup)
        )
        if args.backup is not None:
            config = br.merge(config, br.patroni_backup_config(args.backup))
        return pc.render(config), script

    def _database_password(self, purpose: str, role: str) -> RolePassword:
        """A database role's password: the source's with ``source_passwords``, else generated (named by purpose, not
        by role name, so renaming a role never regenerates a password)."""
        source = self._args.source_passwords
        password = (source_password(source, role) if source is not None
                    else role_password(f"{self._name}-{purpose}-password", role, self._opts(protected=True)))
        self._database_roles.append(password)
        return password

    def _role_passwords_output(self) -> pulumi.Output[dict[str, str]]:
        """Every database role's password by role name (secret): what a standby of this cluster takes."""
        roles = [credentials.role for credentials in self._database_roles]
        return pulumi.Output.secret(pulumi.Output.all(*(c.password for c in self._database_roles)).apply(
            lambda values: dict(zip(roles, values))))

    def _pooler_lookup(self) -> LookupCredentials:
        """The lookup role's password and a Secret with it, PgBouncer's auth file and the server's verifier."""
        credentials = self._database_password("pooler-lookup", pooler_auth.LOOKUP_ROLE)
        secret = opaque_secret(
            f"{self._name}-pooler-lookup",
            namespace=self._args.namespace,
            labels=self._labels,
            data={
                pooler_auth.PASSWORD_KEY: credentials.password,
                pooler_auth.USERLIST_KEY: credentials.password.apply(
                    lambda password: pooler_auth.userlist_line(pooler_auth.LOOKUP_ROLE, password)
                ),
                pooler_auth.VERIFIER_KEY: credentials.password.apply(pooler_auth.stable_verifier),
            },
            opts=self._opts(protected=True),
        )
        return LookupCredentials(role=pooler_auth.LOOKUP_ROLE, secret_name=secret.metadata.name)
    def _backup_files(self) -> dict[str, str]:
        """ConfigMap entries for pgBackRest: its config and the agent script (none without backups)."""
        backup = self._args.backup
        if backup is None:
            return {}
        queue_max = f"{wal_disk_bytes(self._args.storage) // 2 // 2**20}MiB"
        return {
            br.CONFIG_KEY: br.pgbackrest_conf(backup, limits=br.ArchiveLimits(archive_push_queue_max=queue_max)),
            br.AGENT_KEY: br.agent_source(),
        }

    def _rbac(self, scope: str) -> k8s.core.v1.ServiceAccount:
        """Exactly what Patroni's Kubernetes DCS does in Endpoints mode (patroni/dcs/kubernetes.py): list,
        watch, get and create Endpoints and patch only its own (leader, config, sync, failover); list, watch
        and get pods and patch only the members' (its own pod's labels and annotations), every member up to
        ``max_replicas``. No ConfigMaps (unused in this mode), no Services (the component creates the
        keepers), no delete (only ``patronictl remove`` deletes, and it runs with an operator's credentials).
        Kubernetes cannot restrict list, watch or create by name, so those stay namespace-wide and read-only."""
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-patroni",
            metadata=self._metadata(),
            automount_service_account_token=False,
            opts=self._opts(),
        )
        members = [f"{scope}-{ordinal}" for ordinal in range(self._args.max_replicas or self._args.replicas)]
        rule = k8s.rbac.v1.PolicyRuleArgs
        role = k8s.rbac.v1.Role(
            f"{self._name}-patroni",
            metadata=self._metadata(),
            rules=[
                rule(api_groups=[""], resources=["endpoints"], verbs=["get", "list", "watch", "create"]),
                rule(api_groups=[""], resources=["endpoints"], verbs=["patch"], resource_names=pc.endpoints_names(scope)),
                rule(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]),
                rule(api_groups=[""], resources=["pods"], verbs=["patch"], resource_names=members),
            ],
            opts=self._opts(),
        )
        k8s.rbac.v1.RoleBinding(
            f"{self._name}-patroni",
            metadata=self._metadata(),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount", name=account.metadata.name, namespace=account.metadata.namespace
                )
            ],
            opts=self._opts(),
        )
        return account

    def _statefulset(
        self, scope: str, headless: k8s.core.v1.Service, refs: pod.PodRefs,
        managed_roles: Sequence[role_agent.ManagedRole], lookup: role_agent.PoolerLookup | None,
        agent_tls: role_agent.ServerTls | None, *, checksum: str
    ) -> k8s.apps.v1.StatefulSet:
        args = self._args
        separate_wal = args.storage.wal_size is not None
        spec = pod.PodSpecInput(
            scope=scope,
            pod_labels={**self._labels, pc.SCOPE_LABEL: scope},
            selector_labels=self.pod_labels,
            patroni_labels=self.pod_labels,
            image=args.image,
            exporter_image=args.exporter_image,
            resources=args.resources,
            exporter_resources=args.exporter_resources,
            anti_affinity=args.anti_affinity,
            termination_grace_seconds=args.termination_grace_seconds,
            separate_wal=separate_wal,
            app_user=args.app_user,
            reader_user=args.reader_user,
            config_checksum=checksum,
            refs=refs,
            managed_roles=tuple(managed_roles),
            pooler_lookup=lookup,
            role_agent_tls=agent_tls,
            role_agent_resources=args.role_agent_resources,
            database=args.database,
            tls_secret=args.tls_secret_name,
            headless_service=service_names(self._name)["headless"] if args.tls_secret_name is not None else None,
            backup=pod.BackupPod(
                credentials_secrets=tuple(repo.credentials_secret for repo in br.repositories(args.backup)),
                agent_command=br.agent_command(args.backup, script=f"{pod.BACKUP_AGENT_DIR}/{br.AGENT_FILE}",
                                               patroni_ca=pc.CA_FILE if args.tls_secret_name else None),
                agent_resources=args.backup.agent_resources,
            ) if args.backup else None,
        )
        claims = [pod.volume_claim_template(pod.DATA_VOLUME, size=args.storage.data_size,
                                            storage_class=args.storage.storage_class, labels=self.pod_labels)]
        if separate_wal:
            claims.append(pod.volume_claim_template(pod.WAL_VOLUME, size=str(args.storage.wal_size),
                                                    storage_class=args.storage.storage_class, labels=self.pod_labels))
        return k8s.apps.v1.StatefulSet(
            f"{self._name}-statefulset",
            metadata=self._metadata(statefulset_name(self._name)),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                replicas=args.replicas,
                service_name=headless.metadata.name,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.pod_labels)),
                pod_management_policy="OrderedReady",
                update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
                persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                    when_deleted="Retain", when_scaled="Retain"
                ),
                template=pod.pod_template(spec),
                volume_claim_templates=claims,
            ),
            opts=self._opts(protected=True, ignore_changes=["spec.replicas"] if args.autoscaled else None),
        )

    def _certificate(self, issuer: TlsIssuer) -> k8s.apiextensions.CustomResource:
        """A cert-manager Certificate for the server, written to ``tls_secret_name`` (with ``ca.crt``)."""
        args = self._args
        dns_names = pulumi.Output.from_input(args.namespace).apply(lambda ns: certificate_dns_names(self._name, ns))
        return k8s.apiextensions.CustomResource(
            f"{self._name}-certificate",
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=self._metadata(),
            spec=server_certificate_spec(
                secret_name=args.tls_secret_name, common_name=service_names(self._name)["primary"],
                dns_names=dns_names, issuer_name=issuer.name, issuer_kind=issuer.kind,
            ),
            opts=self._opts(),
        )

    def _disruption_budget(self) -> k8s.policy.v1.PodDisruptionBudget:
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata=self._metadata(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.pod_labels)),
            ),
            opts=self._opts(),
        )

    def _network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        """Ingress only: clients to 5432, members to 5432/8008, scrapers to 9187/8008. Egress stays open
        because Patroni must reach the API server, whose address no portable rule can name."""
        args = self._args
        members = k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.pod_labels))
        )
        clients = [k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.client_labels))
        )]
        client_namespaces = [args.monitoring_namespace] if args.monitoring_namespace is not None else []
        client_namespaces += [ns for ns in args.client_namespaces if ns not in client_namespaces]
        clients += [
            k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=namespace_peer(ns),
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.client_labels)),
            )
            for ns in client_namespaces
        ]

        return ingress_policy(
            f"{self._name}-netpol",
            metadata=self._metadata(),
            pod_labels=self.pod_labels,
            rules=[
                (clients, [pc.POSTGRES_PORT]),
                ([members], [pc.POSTGRES_PORT, pc.PATRONI_PORT]),
                ([scraper_peer(args.monitoring_namespace)],
                 [pc.EXPORTER_PORT, pc.PATRONI_PORT, *([br.AGENT_PORT] if args.backup else [])]),
            ],
            opts=self._opts(),
        )


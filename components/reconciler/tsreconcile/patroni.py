"""The Patroni half: DCS parameters through the REST API, and restarts that keep the cluster serving.

Order when members report ``pending_restart``: every replica first, one at a time, each only when all
other members are running; then a switchover from the primary to a healthy replica that no longer
needs a restart (the demoted primary restarts as a replica, which applies its pending settings); a
final restart only if it still reports one. A single-member cluster has no one to switch to: its
primary is restarted in place (writes pause for that restart) and the report says so.

Patroni may legitimately refuse a switchover for a while (the synchronous standby is not named yet after
the replicas' restarts, a member is still starting, the previous attempt's outcome is unknown): the
switchover is retried, with a candidate chosen afresh, until the step's timeout.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterable, List, Optional

from .pgvalues import loosely_equal, value_matches
from .report import Report
from .sql import ReconcileError

HEALTHY_STATES = ("running", "streaming")
LEADER_ROLES = ("leader", "master", "primary", "standby_leader")
SYNC_ROLES = ("sync_standby", "quorum_standby")
"""/cluster roles of synchronous standbys."""
POLL_SECONDS = 1.0
MAX_ROUNDS = 3
SETTLE_SECONDS = 20.0


class PatroniAPI:
    """A small client of Patroni's REST API; unsafe methods authenticate as the restapi user."""

    def __init__(self, url: str, user: str, password: str, *, timeout: float = 10.0, ca_file: Optional[str] = None,
                 tls: Optional[ssl.SSLContext] = None) -> None:
        self.url = url.rstrip("/")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.timeout = timeout
        # HTTPS (TLS on): by default the member's certificate must chain to the CA and name the host asked for.
        self._tls = tls or (ssl.create_default_context(cafile=ca_file) if ca_file else None)

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None, *, base: Optional[str] = None,
                timeout: Optional[float] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        url = f"{(base or self.url).rstrip('/')}{path}"
        if self._tls is not None and not url.startswith("https://"):
            raise ReconcileError(f"refusing to send the REST API password over plain HTTP to {url}: TLS is declared")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", self._auth)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout, context=self._tls) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise ReconcileError(f"Patroni {method} {path} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ReconcileError(f"Patroni {method} {path} failed: {error}") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    def cluster(self) -> Dict[str, Any]:
        return self.request("GET", "/cluster")

    def config(self) -> Dict[str, Any]:
        return self.request("GET", "/config")

    def patch_parameters(self, parameters: Dict[str, Optional[str]]) -> None:
        self.request("PATCH", "/config", {"postgresql": {"parameters": parameters}})

    def patch_config(self, settings: Dict[str, Any]) -> None:
        self.request("PATCH", "/config", settings)

    def member_status(self, member: Dict[str, Any]) -> Dict[str, Any]:
        return self.request("GET", "/patroni", base=member_base(member))

    def restart(self, member: Dict[str, Any], *, timeout: float) -> None:
        """POST /restart; Patroni answers once PostgreSQL accepts connections again or ``timeout`` seconds
        pass (its restart is synchronous), so the request waits that long plus this client's timeout."""
        self.request("POST", "/restart", {"timeout": int(timeout)}, base=member_base(member),
                     timeout=timeout + self.timeout)

    def switchover(self, leader: str, candidate: str, *, loop_wait: float = 10.0) -> None:
        """POST /switchover; Patroni answers once the new leader holds the lock, after up to
        ``2 * max(10, loop_wait)`` seconds of polling, so the request waits that long plus this client's timeout."""
        self.request("POST", "/switchover", {"leader": leader, "candidate": candidate},
                     timeout=switchover_answer_seconds(loop_wait) + self.timeout)


def switchover_answer_seconds(loop_wait: float) -> float:
    """How long Patroni's POST /switchover may poll for the outcome before answering (its api.py)."""
    return 2 * max(10.0, float(loop_wait))


def member_base(member: Dict[str, Any]) -> str:
    """``http://10.0.0.5:8008`` from a /cluster member's ``api_url`` (``.../patroni``)."""
    api_url = str(member["api_url"])
    return api_url[: -len("/patroni")] if api_url.endswith("/patroni") else api_url


def leader_of(cluster: Dict[str, Any]) -> Dict[str, Any]:
    leaders = [m for m in cluster.get("members", []) if m.get("role") in LEADER_ROLES]
    if len(leaders) != 1:
        raise ReconcileError(f"expected one leader, Patroni reports {len(leaders)}: {cluster.get('members')}")
    return leaders[0]


def _unhealthy(cluster: Dict[str, Any]) -> List[str]:
    return [f"{m.get('name')}={m.get('state')}" for m in cluster.get("members", []) if m.get("state") not in HEALTHY_STATES]


class Waiter:
    """Polls until a condition holds or ``timeout`` seconds pass (then raises with ``what``)."""

    def __init__(self, timeout: float, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout, self.clock, self.sleep = timeout, clock, sleep

    def until(self, condition: Callable[[], Any], what: str) -> Any:
        deadline = self.clock() + self.timeout
        last_error: Optional[Exception] = None
        while True:
            try:
                result = condition()
                if result:
                    return result
            except ReconcileError as error:  # a member briefly unreachable while it restarts
                last_error = error
            if self.clock() > deadline:
                raise ReconcileError(f"timed out after {self.timeout:.0f}s waiting for {what}" + (f" ({last_error})" if last_error else ""))
            self.sleep(POLL_SECONDS)


def healthy_cluster(api: PatroniAPI, waiter: Waiter, why: str) -> Dict[str, Any]:
    """/cluster once every member runs and there is one leader: the quorum gate before taking one down."""

    not_ready: List[str] = []

    def ready() -> Optional[Dict[str, Any]]:
        cluster = api.cluster()
        not_ready[:] = _unhealthy(cluster)
        if not_ready:
            return None
        leader_of(cluster)
        return cluster

    try:
        return waiter.until(ready, f"every member to be running before {why}")
    except ReconcileError as error:
        raise ReconcileError(
            f"{error}; not ready: {', '.join(not_ready) or 'none'}; refusing to take a member down while another is not ready"
        ) from None


def _patch_differences(kind: str, declared: Dict[str, Any], changes: Dict[str, Any], before: Dict[str, Any],
                       patch: Callable[[Dict[str, Any]], None], report: Report, *, default: Any = None) -> Dict[str, Any]:
    """Report the declared values that already hold, PATCH ``changes`` and report each (None shows as the default)."""
    for name, value in sorted(declared.items()):
        if name not in changes:
            report.unchanged(kind, name, value=value)
    if changes:
        patch(changes)
        for name, value in changes.items():
            report.change(kind, name, before=before.get(name, default), after=value if value is not None else "(default)",
                          via="Patroni dynamic configuration")
    return changes


def apply_dcs_parameters(
    api: PatroniAPI, parameters: Dict[str, str], report: Report, *, managed: Iterable[str] = ()
) -> Dict[str, Optional[str]]:
    """PATCH the DCS parameters that differ from the declaration, and reset (null) managed ones no longer
    declared; returns what was changed."""
    current = (api.config().get("postgresql") or {}).get("parameters") or {}
    changes: Dict[str, Optional[str]] = {
        name: value for name, value in sorted(parameters.items()) if not loosely_equal(value, current.get(name))
    }
    changes.update({name: None for name in sorted(managed) if name not in parameters and current.get(name) is not None})
    return _patch_differences("parameter", parameters, changes, current, api.patch_parameters, report)


def apply_dcs_settings(api: PatroniAPI, settings: Dict[str, Any], report: Report) -> Dict[str, Any]:
    """PATCH the top-level dynamic-configuration keys (``synchronous_mode``, ...) that differ (an absent key is
    Patroni's default, false); returns them. Patroni applies them in its next HA loop, without a restart."""
    current = api.config()
    changes = {name: value for name, value in sorted(settings.items()) if current.get(name, False) != value}
    return _patch_differences("setting", settings, changes, current, api.patch_config, report, default=False)


MemberSettings = Callable[[Dict[str, Any], List[str]], Dict[str, Any]]
"""(member, names) -> name -> (setting, unit, vartype, pending_restart) read from that member's server."""


def wait_until_members_see(
    api: PatroniAPI, parameters: Dict[str, str], settings_of: MemberSettings, waiter: Waiter
) -> None:
    """Every member has either applied each parameter or flagged it pending_restart."""
    names = sorted(parameters)

    def seen_everywhere() -> bool:
        for member in api.cluster().get("members", []):
            settings = settings_of(member, names)
            for name in names:
                setting, unit, vartype, pending = settings[name]
                if not pending and not value_matches(parameters[name], setting, unit, vartype):
                    return False
        return True

    waiter.until(seen_everywhere, f"every member to load {names}")


Pending = Callable[[Dict[str, Any]], bool]
"""member -> True while it needs a restart to apply its settings."""


def pending_restart(api: PatroniAPI, settings_pending: Callable[[Dict[str, Any]], bool]) -> Pending:
    """Patroni's live flag on the member, or PostgreSQL's own ``pg_settings.pending_restart`` (which is
    set by the reload, before Patroni's next HA loop publishes its flag in /cluster)."""
    return lambda member: bool(api.member_status(member).get("pending_restart")) or settings_pending(member)


def _restart_member(api: PatroniAPI, member: Dict[str, Any], waiter: Waiter, report: Report, *, role: str,
                    is_pending: Pending) -> None:
    started = api.member_status(member).get("postmaster_start_time")
    api.restart(member, timeout=waiter.timeout)

    def restarted() -> bool:
        status = api.member_status(member)
        return status.get("state") in HEALTHY_STATES and status.get("postmaster_start_time") != started

    waiter.until(restarted, f"{member['name']} to come back after its restart")
    report.change("restart", member["name"], role=role, reason="pending_restart")
    # Patroni re-evaluates pending_restart in its next HA loop; let it settle so the next round does not
    # restart this member again on a stale flag. A replica may legitimately stay pending (a lowered
    # max_connections waits for the primary), so running out of patience here is not an error.
    try:
        Waiter(SETTLE_SECONDS, clock=waiter.clock, sleep=waiter.sleep).until(
            lambda: not is_pending(member), "pending_restart to clear"
        )
    except ReconcileError:
        pass


def choose_candidate(cluster: Dict[str, Any], leader: str, is_pending: Pending) -> Optional[Dict[str, Any]]:
    """The replica to switch over to: healthy, no pending restart; a synchronous standby when there is one
    (in synchronous mode Patroni switches over only to it), then the least lag, then the name."""
    candidates = [m for m in cluster.get("members", []) if m["name"] != leader and m.get("state") in HEALTHY_STATES
                  and not is_pending(m)]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (m.get("role") not in SYNC_ROLES,
                                          m.get("lag") if isinstance(m.get("lag"), int) else 1 << 62, m["name"]))


def switch_over(api: PatroniAPI, leader: str, waiter: Waiter, is_pending: Pending) -> str:
    """Move the leader lock away from ``leader``; returns the new leader. Each poll reads /cluster afresh:
    done once another member leads and every member runs; otherwise, while ``leader`` still leads, (re)ask
    for a switchover to the best candidate. A refusal (412: the candidate is not the synchronous standby
    yet; 503: the switchover failed or its outcome is unknown) is retried at the next poll; in synchronous
    mode no request is sent until Patroni names a synchronous standby."""
    config = api.config()
    loop_wait = float(config.get("loop_wait") or 10)
    synchronous = bool(config.get("synchronous_mode"))

    def switched() -> Optional[str]:
        cluster = api.cluster()
        current = leader_of(cluster)["name"]
        if current != leader:
            return None if _unhealthy(cluster) else current
        candidate = choose_candidate(cluster, leader, is_pending)
        if candidate is None:
            raise ReconcileError(f"no healthy replica without a pending restart yet: {cluster.get('members')}")
        if synchronous and candidate.get("role") not in SYNC_ROLES:
            raise ReconcileError(f"no synchronous standby named yet: {cluster.get('members')}")
        api.switchover(leader, candidate["name"], loop_wait=loop_wait)
        return None

    return waiter.until(switched, f"the switchover from {leader} to another member")


def restart_pending_members(api: PatroniAPI, waiter: Waiter, report: Report, is_pending: Pending) -> None:
    """Apply restart-only settings: replicas first, then a switchover, never two members down at once."""
    for _ in range(MAX_ROUNDS):
        cluster = healthy_cluster(api, waiter, "a restart")
        pending = {m["name"] for m in cluster["members"] if is_pending(m)}
        if not pending:
            report.unchanged("restart", "cluster", action="no member has a pending restart")
            return
        leader = leader_of(cluster)
        for member in [m for m in cluster["members"] if m["name"] in pending and m["name"] != leader["name"]]:
            healthy_cluster(api, waiter, f"restarting replica {member['name']}")
            _restart_member(api, member, waiter, report, role="replica", is_pending=is_pending)
        if leader["name"] not in pending:
            continue
        cluster = healthy_cluster(api, waiter, f"switching over from {leader['name']}")
        candidates = [m for m in cluster["members"] if m["name"] != leader["name"] and not is_pending(m)]
        if candidates:
            new_leader = switch_over(api, leader["name"], waiter, is_pending)
            report.change("switchover", leader["name"], to=new_leader, reason="pending_restart on the primary")
        elif len(cluster["members"]) == 1:
            _restart_member(api, leader, waiter, report, role="primary (single member: writes paused during the restart)",
                            is_pending=is_pending)
        else:
            raise ReconcileError(f"the primary {leader['name']} needs a restart but no replica is ready to take over")
    still = [m["name"] for m in api.cluster().get("members", []) if is_pending(m)]
    if still:
        raise ReconcileError(f"members still report pending_restart after {MAX_ROUNDS} rounds: {still}")

"""Restart ordering and the quorum gate, on a scripted Patroni (the happy path runs against real Patroni in
test_reconcile_patroni.py): what the reconciler does when a member is not ready, when the only member
is the primary, and in which order it takes members down."""

from __future__ import annotations

import io
from typing import Any

import pytest

from components.reconciler.tsreconcile import patroni
from components.reconciler.tsreconcile.report import Report
from components.reconciler.tsreconcile.sql import ReconcileError


class ScriptedPatroni:
    """Just enough of Patroni's REST API: /cluster, /patroni per member, restart, switchover."""

    def __init__(self, members: dict[str, dict[str, Any]], config: dict[str, Any] | None = None) -> None:
        self.members = members
        self.calls: list[tuple[str, str]] = []
        self.restart_timeouts: list[float] = []
        self.current_config = config or {}

    def config(self) -> dict[str, Any]:
        return self.current_config

    def _entry(self, name: str) -> dict[str, Any]:
        member = self.members[name]
        return {"name": name, "api_url": f"http://{name}:8008/patroni", "host": name, "port": 5432, **member}

    def cluster(self) -> dict[str, Any]:
        return {"members": [self._entry(name) for name in self.members]}

    def member_status(self, member: dict[str, Any]) -> dict[str, Any]:
        return self._entry(member["name"])

    def restart(self, member: dict[str, Any], *, timeout: float) -> None:
        self.calls.append(("restart", member["name"]))
        self.restart_timeouts.append(timeout)
        state = self.members[member["name"]]
        state.update(postmaster_start_time=state.get("postmaster_start_time", 0) + 1, pending_restart=False)

    def switchover(self, leader: str, candidate: str, *, loop_wait: float = 10.0) -> None:
        self.calls.append(("switchover", f"{leader}->{candidate}"))
        self.members[leader].update(role="replica", state="streaming", pending_restart=False)
        self.members[candidate].update(role="leader", state="running")


def waiter() -> patroni.Waiter:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return patroni.Waiter(30, clock=lambda: now[0], sleep=sleep)


def run(api: ScriptedPatroni) -> Report:
    report = Report(io.StringIO())
    patroni.restart_pending_members(api, waiter(), report, lambda m: bool(api.members[m["name"]].get("pending_restart")))  # type: ignore[arg-type]
    return report


def test_replicas_restart_first_then_the_primary_switches_over() -> None:
    api = ScriptedPatroni({
        "db-0": {"role": "leader", "state": "running", "pending_restart": True},
        "db-1": {"role": "replica", "state": "streaming", "pending_restart": True, "lag": 0},
        "db-2": {"role": "replica", "state": "streaming", "pending_restart": True, "lag": 0},
    })
    report = run(api)
    assert api.calls == [("restart", "db-1"), ("restart", "db-2"), ("switchover", "db-0->db-1")]
    assert [c["kind"] for c in report.changes] == ["restart", "restart", "switchover"]
    assert api.restart_timeouts == [30, 30]  # each restart may take the whole step (the waiter's timeout)


def test_a_restart_request_waits_as_long_as_patroni_may_take() -> None:
    # Patroni's POST /restart answers only once PostgreSQL is up again (or its "timeout" passes): on a busy
    # machine that is well beyond the client's usual 10 s, which must not turn a slow restart into a failure.
    api = patroni.PatroniAPI("http://db-0:8008", "restapi", "secret", timeout=10)
    sent: list[tuple[str, str, Any, str | None, float | None]] = []
    api.request = lambda method, path, body=None, *, base=None, timeout=None: sent.append(  # type: ignore[method-assign]
        (method, path, body, base, timeout))
    api.restart({"name": "db-1", "api_url": "http://db-1:8008/patroni"}, timeout=180)
    assert sent == [("POST", "/restart", {"timeout": 180}, "http://db-1:8008", 190)]


def test_in_synchronous_mode_the_switchover_goes_to_the_synchronous_standby() -> None:
    """Patroni refuses a switchover to any other candidate ('candidate name does not match with sync_standby'),
    even one with less lag or an earlier name."""
    api = ScriptedPatroni({
        "db-0": {"role": "leader", "state": "running", "pending_restart": True},
        "db-1": {"role": "replica", "state": "streaming", "pending_restart": True, "lag": 0},
        "db-2": {"role": "sync_standby", "state": "streaming", "pending_restart": True, "lag": 5},
    })
    run(api)
    assert api.calls[-1] == ("switchover", "db-0->db-2")


class Refusing(ScriptedPatroni):
    """Patroni right after the replicas' restarts: it refuses the first switchovers (412, the candidate is not
    the synchronous standby yet), and names db-2 synchronous standby only after a few polls."""

    def __init__(self, members: dict[str, dict[str, Any]], *, refusals: int, config: dict[str, Any]) -> None:
        super().__init__(members, config)
        self.refusals = refusals
        self.polls = 0

    def cluster(self) -> dict[str, Any]:
        self.polls += 1
        if self.polls == 4 and "db-2" in self.members:
            self.members["db-2"]["role"] = "sync_standby"
        return super().cluster()

    def switchover(self, leader: str, candidate: str, *, loop_wait: float = 10.0) -> None:
        if self.refusals:
            self.refusals -= 1
            self.calls.append(("refused", f"{leader}->{candidate}"))
            raise ReconcileError("Patroni POST /switchover answered 412: candidate name does not match with sync_standby")
        super().switchover(leader, candidate, loop_wait=loop_wait)


def test_a_refused_switchover_is_retried_until_patroni_accepts_it() -> None:
    def members(sync: str | None = None) -> dict[str, dict[str, Any]]:
        return {"db-0": {"role": "leader", "state": "running", "pending_restart": True},
                **{name: {"role": "sync_standby" if name == sync else "replica", "state": "streaming", "lag": 0}
                   for name in ("db-1", "db-2")}}

    api = Refusing(members(), refusals=0, config={"synchronous_mode": True, "loop_wait": 10})
    report = run(api)
    # In synchronous mode nothing is asked of Patroni before it names a synchronous standby.
    assert api.calls == [("switchover", "db-0->db-2")] and api.polls >= 4
    assert report.changes[-1]["kind"] == "switchover" and report.changes[-1]["to"] == "db-2"

    api = Refusing(members(sync="db-1"), refusals=2, config={"loop_wait": 10})
    report = run(api)
    assert api.calls == [("refused", "db-0->db-1"), ("refused", "db-0->db-1"), ("switchover", "db-0->db-1")]
    assert report.changes[-1]["to"] == "db-1"


def test_a_switchover_that_never_happens_times_out_with_the_last_refusal() -> None:
    api = Refusing({
        "db-0": {"role": "leader", "state": "running", "pending_restart": True},
        "db-1": {"role": "sync_standby", "state": "streaming", "lag": 0},
    }, refusals=1 << 30, config={})
    with pytest.raises(ReconcileError, match=r"timed out after 30s waiting for the switchover from db-0.*answered 412"):
        run(api)


class ScriptedConfig:
    """Patroni's /config and PATCH /config, recording what was sent."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.current = config
        self.patches: list[dict[str, Any]] = []

    def config(self) -> dict[str, Any]:
        return self.current

    def patch_config(self, settings: dict[str, Any]) -> None:
        self.patches.append(settings)
        self.current = {**self.current, **settings}


def test_dcs_settings_are_patched_only_where_they_differ() -> None:
    api = ScriptedConfig({"ttl": 20, "synchronous_mode": False})
    report = Report(io.StringIO())
    declared = {"synchronous_mode": True, "synchronous_mode_strict": False}
    patroni.apply_dcs_settings(api, declared, report)  # type: ignore[arg-type]
    assert api.patches == [{"synchronous_mode": True}], "an absent key is Patroni's default, False"
    assert [(c["target"], c["before"], c["after"]) for c in report.changes] == [("synchronous_mode", False, True)]
    again = Report(io.StringIO())
    patroni.apply_dcs_settings(api, declared, again)  # type: ignore[arg-type]
    assert api.patches == [{"synchronous_mode": True}] and again.changes == []


def test_a_member_that_is_not_ready_stops_the_run_before_anything_goes_down() -> None:
    api = ScriptedPatroni({
        "db-0": {"role": "leader", "state": "running", "pending_restart": True},
        "db-1": {"role": "replica", "state": "starting", "pending_restart": True},
        "db-2": {"role": "replica", "state": "streaming", "pending_restart": True},
    })
    with pytest.raises(ReconcileError, match="db-1=starting.*refusing to take a member down"):
        run(api)
    assert api.calls == []


def test_a_single_member_restarts_in_place_and_says_writes_paused() -> None:
    api = ScriptedPatroni({"db-0": {"role": "leader", "state": "running", "pending_restart": True}})
    report = run(api)
    assert api.calls == [("restart", "db-0")]
    assert "writes paused" in report.changes[0]["role"]


def test_nothing_pending_is_reported_as_unchanged() -> None:
    api = ScriptedPatroni({
        "db-0": {"role": "leader", "state": "running"},
        "db-1": {"role": "replica", "state": "streaming"},
    })
    report = run(api)
    assert api.calls == [] and report.changes == [] and report.checks[0]["kind"] == "restart"


def test_only_a_healthy_replica_without_pending_restart_may_take_over() -> None:
    class Stuck(ScriptedPatroni):
        def restart(self, member: dict[str, Any], *, timeout: float) -> None:  # the restart happens, the flag stays (a lowered value)
            self.calls.append(("restart", member["name"]))
            self.members[member["name"]]["postmaster_start_time"] = 99

    api = Stuck({
        "db-0": {"role": "leader", "state": "running", "pending_restart": True},
        "db-1": {"role": "replica", "state": "streaming", "pending_restart": True},
    })
    with pytest.raises(ReconcileError, match="needs a restart but no replica is ready to take over"):
        run(api)
    assert ("switchover", "db-0->db-1") not in api.calls

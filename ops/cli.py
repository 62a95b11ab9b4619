"""``python -m ops``: argument parsing and the verbs, each a few kubectl execs built by :mod:`ops.commands`."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from components.timescaledb import pod

from . import commands
from .target import Target, TargetError, load_target

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]
LEADER_ROLES = ("Leader", "Standby Leader")


class OpsError(Exception):
    """A verb refused or failed; its message says why and what to do."""


def run_captured(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; its output is returned, its errors passed through to the terminal."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, text=True, check=False)


class Ops:
    """The verbs against one target. ``runner`` runs an argv (a fake in tests); ``dry_run`` only prints."""

    def __init__(self, target: Target, runner: Runner = run_captured, dry_run: bool = False,
                 out: Callable[[str], None] = print) -> None:
        self.target = target
        self._runner = runner
        self._dry_run = dry_run
        self._out = out

    def _run(self, argv: list[str]) -> str:
        if self._dry_run:
            self._out(shlex.join(argv))
            return ""
        result = self._runner(argv)
        if result.returncode != 0:
            raise OpsError(f"{argv[0]} exited with {result.returncode}: {shlex.join(argv)}")
        return result.stdout

    def members(self) -> list[dict[str, Any]]:
        """Patroni's member list, asked of the first member that answers."""
        failures = []
        for member in self.target.members:
            try:
                text = self._run(commands.kubectl_exec(self.target, member, pod.PATRONI_CONTAINER,
                                                       commands.members_json()))
            except OpsError as error:
                failures.append(str(error))
                continue
            return json.loads(text) if text else [{"Member": member, "Role": "Leader", "State": "(dry run)"}]
        raise OpsError("no member answered: " + "; ".join(failures))

    def leader(self) -> str:
        found = [m["Member"] for m in self.members() if m.get("Role") in LEADER_ROLES]
        if not found:
            raise OpsError("the cluster has no leader now (patronictl list shows none): nothing to act on")
        return str(found[0])

    def status(self) -> None:
        members = self.members()
        for m in members:
            self._out(f"{m.get('Member')}: {m.get('Role')}, {m.get('State')}, timeline {m.get('TL')}, "
                      f"replay lag {m.get('Replay Lag', m.get('Lag in MB', ''))} MB")
        if self.target.stanza is not None:
            leader = next((m["Member"] for m in members if m.get("Role") in LEADER_ROLES), members[0]["Member"])
            info = self._run(commands.kubectl_exec(self.target, leader, pod.BACKUP_CONTAINER,
                                                   commands.backup_info(self.target.stanza, self.target.repositories)))
            self._out(newest_backup(info, self.target.stanza))

    def switchover(self, candidate: str | None) -> None:
        leader = self.leader()
        output = self._run(commands.kubectl_exec(self.target, leader, pod.PATRONI_CONTAINER,
                                                 commands.switchover(leader, candidate)))
        # patronictl exits 0 when Patroni refuses (e.g. "412, switchover is not possible: can not find sync_standby"
        # while the synchronous standby is not named yet); its message is the only sign.
        refused = [line for line in output.splitlines() if line.startswith("Switchover failed")]
        if refused:
            raise OpsError(f"Patroni refused the switchover: {refused[0]} (python -m ops status shows the members; "
                           "run again once a synchronous standby is listed)")

    def backup(self, kind: str) -> None:
        if self.target.stanza is None:
            raise OpsError(f"stack {self.target.stack} has no backup section: nothing to back up to")
        if self.target.standby:
            raise OpsError(f"stack {self.target.stack} is a standby cluster: it backs up to its own stanza only "
                           "after promotion (python -m ops promote)")
        leader = self.leader()
        for inner in commands.backup(self.target.stanza, self.target.repositories, kind):
            self._run(commands.kubectl_exec(self.target, leader, pod.BACKUP_CONTAINER, inner))

    def promote(self, source_is_down: bool) -> None:
        if not self.target.standby:
            raise OpsError(f"stack {self.target.stack} is not a standby cluster (no backup.standby): nothing to promote")
        if not source_is_down:
            raise OpsError("refusing to promote: a promoted standby and a prod that still accepts writes would "
                           "both take writes (split brain). Fence prod first (scale it to 0 or cut its clients), "
                           "then run again with --source-is-down")
        self._run(commands.kubectl_exec(self.target, self.leader(), pod.PATRONI_CONTAINER,
                                        commands.promote_standby_cluster()))
        self._out("promoted: remove backup.standby from the stack file, enable its workloads, then pulumi up")

    def dr_lag(self) -> None:
        if not self.target.standby:
            raise OpsError(f"stack {self.target.stack} is not a standby cluster: dr-lag runs against the DR stack")
        self._out(self._run(commands.kubectl_exec(self.target, self.leader(), pod.PATRONI_CONTAINER,
                                                  commands.psql(commands.DR_LAG_SQL))).strip())


def newest_backup(info_json: str, stanza: str) -> str:
    """One line on the newest backup in ``pgbackrest info --output=json``."""
    if not info_json:
        return "newest backup: (dry run)"
    stanzas = [s for s in json.loads(info_json) if s.get("name") == stanza]
    backups = stanzas[0].get("backup", []) if stanzas else []
    if not backups:
        return f"newest backup: none in stanza {stanza}"
    newest = max(backups, key=lambda b: b["timestamp"]["stop"])
    return f"newest backup: {newest['label']} ({newest['type']}), finished at unix time {newest['timestamp']['stop']}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    verbs = top.add_subparsers(dest="verb", required=True)
    for name, help_text in (("status", "members, roles, lag, timeline and the newest backup"),
                            ("switchover", "a planned switchover now (to --candidate, else the synchronous standby)"),
                            ("backup", "an on-demand backup on the leader"),
                            ("promote", "promote a standby cluster (refused unless --source-is-down)"),
                            ("dr-lag", "how far the standby cluster's replay is behind")):
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument("--stack", required=True, help="the stack whose Pulumi.<stack>.yaml names the cluster")
        verb.add_argument("--context", help="kube context (default: the stack's cluster.context)")
        verb.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
        if name == "switchover":
            verb.add_argument("--candidate", help="member to switch to")
        if name == "backup":
            verb.add_argument("--type", dest="kind", choices=("full", "diff", "incr"), default="full")
        if name == "promote":
            verb.add_argument("--source-is-down", action="store_true",
                              help="the source (prod) is fenced and accepts no writes")
    return top


def main(argv: Sequence[str] | None = None, runner: Runner = run_captured) -> int:
    args = parser().parse_args(argv)
    try:
        ops = Ops(load_target(args.stack, context=args.context), runner=runner, dry_run=args.dry_run)
        verb = {"status": ops.status, "switchover": lambda: ops.switchover(args.candidate),
                "backup": lambda: ops.backup(args.kind), "promote": lambda: ops.promote(args.source_is_down),
                "dr-lag": ops.dr_lag}[args.verb]
        verb()
    except (OpsError, TargetError) as error:
        print(f"ops {args.verb}: {error}", file=sys.stderr)
        return 2
    return 0

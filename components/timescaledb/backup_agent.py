"""The backup agent: a small loop in a sidecar of every member that runs scheduled pgBackRest backups.

Standard library only: this file is shipped verbatim in the component's ConfigMap and run with the
image's ``python3`` (``python3 backup_agent.py --stanza ...``); the component and the stack config
import its cron parser so a schedule is validated by the same code that runs it.

Why an in-pod agent rather than a CronJob (the other options the issue names):

* **Always the current primary.** Every member runs the agent; each loop asks its own Patroni
  (``GET /primary`` on localhost, 200 only on the leader lock holder) and only the leader backs up.
  After a failover the new leader's agent sees the schedule is overdue and runs the backup; no
  Service, kubectl or pods/exec RBAC is involved, and ``pgbackrest backup`` itself refuses to run
  against a PostgreSQL in recovery, so a demoted member cannot back up even in a race.
* **Never two at once.** One agent process runs backups one after the other; the leader lock makes
  the agents of other members idle; pgBackRest's own backup lock (``lock-path``) stops a second
  backup on the same member.
* **Catch-up, not minute matching.** A backup type is due when its schedule fired after the newest
  backup of that type (or a larger one) in the *repository*. A missed slot (pod restart, failover,
  failed run) is therefore caught up on the next loop, and the repository, not a pod's memory, is the
  source of truth.
* **Metrics.** Every member's agent reads ``pgbackrest info`` and ``pg_stat_archiver`` and serves them
  on ``/metrics``: the age and size of the last backups, repository health and archiving progress are
  visible even while no backup runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import glob
import http.server
import json
import logging
import os
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence

BACKUP_TYPES = ("full", "diff")
"""Scheduled backup types, largest first: a full backup also satisfies a due differential."""

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


class CronError(ValueError):
    """A schedule is not a five-field cron expression this agent understands."""


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression (minute hour day-of-month month day-of-week, UTC)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday (7 is accepted and means Sunday too)."""
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: dt.date) -> bool:
        """cron's rule: when both day fields are restricted, either one matching is enough."""
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def previous(self, now: dt.datetime) -> dt.datetime:
        """The latest fire time at or before ``now`` (UTC, minute precision)."""
        now = now.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
        for back in range(0, 4 * 366 + 1):
            day = now.date() - dt.timedelta(days=back)
            if not self.day_matches(day):
                continue
            for hour in sorted(self.hours, reverse=True):
                for minute in sorted(self.minutes, reverse=True):
                    fire = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.timezone.utc)
                    if fire <= now:
                        return fire
        raise CronError("schedule never fires")


def parse_cron(expression: str) -> Cron:
    """Parse ``expression``; raise :class:`CronError` saying which field is wrong and why."""
    if not isinstance(expression, str):
        raise CronError(f"must be a cron expression string, got {type(expression).__name__}")
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"must have 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    values = [_cron_field(text, name, low, high) for text, (name, low, high) in zip(parts, _FIELDS)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    cron = Cron(values[0], values[1], values[2], values[3], weekdays, parts[2] == "*", parts[4] == "*")
    cron.previous(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))  # a schedule that never fires is an error
    return cron


def _cron_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    chosen: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, end = low, high
            elif "-" in span:
                start_text, end_text = span.split("-", 1)
                start, end = int(start_text), int(end_text)
            else:
                start = int(span)
                end = high if step_text else start
        except ValueError:
            raise CronError(f"{name} field {item!r} must be *, a number, a range a-b, or a step */n") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{name} field {item!r} must stay within {low}-{high} with a step >= 1")
        chosen.update(range(start, end + 1, step))
    return frozenset(chosen)


def max_interval_seconds(expressions: Sequence[str], *, now: dt.datetime | None = None) -> int:
    """The longest time between two consecutive fires of any of ``expressions`` over a year."""
    crons = [parse_cron(e) for e in expressions]
    moment = (now or dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)).replace(second=0, microsecond=0)
    end = moment - dt.timedelta(days=366)
    longest = 0
    previous = max(c.previous(moment) for c in crons)
    while previous > end:
        earlier = max(c.previous(previous - dt.timedelta(minutes=1)) for c in crons)
        longest = max(longest, int((previous - earlier).total_seconds()))
        previous = earlier
    return longest


# -- repository state ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BackupRecord:
    """The newest backup of one type in the repository."""

    type: str
    start: float
    stop: float
    size_bytes: int
    """Size of the backup in the repository (after compression, this backup's files only)."""
    timeline: int = 1
    """Timeline the backup was taken on (its first WAL segment's): it cannot restore a later timeline."""


@dataclasses.dataclass(frozen=True)
class RepoState:
    """What ``pgbackrest info`` says about the stanza."""

    ok: bool
    """The command ran and the stanza is usable or not created yet (status ok, no backup yet, no stanza yet)."""
    stanza_exists: bool
    newest: Mapping[str, BackupRecord]
    """Newest backup per type (``full``, ``diff``, ``incr``)."""


def parse_info(output: str, stanza: str, repo: int | None = None) -> RepoState:
    """Read ``pgbackrest info --output=json`` for ``stanza``; with ``repo``, only that repository's backups."""
    try:
        stanzas = json.loads(output)
        entry = next(s for s in stanzas if s.get("name") == stanza)
    except (ValueError, StopIteration, TypeError, AttributeError):
        return RepoState(ok=False, stanza_exists=False, newest={})
    code = (entry.get("status") or {}).get("code")
    newest: dict[str, BackupRecord] = {}
    for backup in entry.get("backup") or []:
        if repo is not None and (backup.get("database") or {}).get("repo-key", 1) != repo:
            continue
        record = BackupRecord(
            type=backup["type"],
            start=float(backup["timestamp"]["start"]),
            stop=float(backup["timestamp"]["stop"]),
            size_bytes=int(backup["info"]["repository"].get("delta", backup["info"]["repository"].get("size", 0))),
            timeline=int(str((backup.get("archive") or {}).get("start") or "1")[:8], 16),
        )
        if record.type not in newest or record.stop > newest[record.type].stop:
            newest[record.type] = record
    # 0 ok, 2 no valid backup yet, 1 no stanza yet (the leader's agent creates it; a standby cluster's
    # own stanza only exists after promotion); others are repository or archive errors.
    return RepoState(ok=code in (0, 1, 2), stanza_exists=code != 1, newest=newest)


def stalest(states: Sequence[RepoState]) -> RepoState:
    """One view of several repositories: usable when all are, and per type the newest backup of the repository
    whose newest is oldest (absent when any lacks it), so a backup-age alert fires when any copy falls behind."""
    newest: dict[str, BackupRecord] = {}
    for backup_type in BACKUP_TYPES:
        records = [state.newest.get(backup_type) for state in states]
        if records and all(record is not None for record in records):
            newest[backup_type] = min((r for r in records if r is not None), key=lambda r: r.stop)
    return RepoState(ok=all(s.ok for s in states), stanza_exists=all(s.stanza_exists for s in states), newest=newest)


def last_completed(state: RepoState, backup_type: str) -> float | None:
    """When the newest backup satisfying ``backup_type`` finished (a full satisfies a diff)."""
    satisfying = BACKUP_TYPES[: BACKUP_TYPES.index(backup_type) + 1]
    stops = [state.newest[t].stop for t in satisfying if t in state.newest]
    return max(stops) if stops else None


def due_backup(schedules: Mapping[str, Cron], state: RepoState, now: dt.datetime,
               timeline: int | None = None) -> str | None:
    """The largest backup type whose schedule fired after the newest backup satisfying it; a full backup at once
    when the newest full one is of an earlier ``timeline`` than the server's (after a promotion or a switch back,
    its WAL does not lead to this timeline, so it restores nothing written since)."""
    full = state.newest.get("full")
    if timeline is not None and "full" in schedules and (full is None or full.timeline < timeline):
        return "full"
    for backup_type in BACKUP_TYPES:
        cron = schedules.get(backup_type)
        if cron is None:
            continue
        done = last_completed(state, backup_type)
        if done is None or cron.previous(now).timestamp() > done:
            return backup_type
    return None


def backup_command(pgbackrest: str, stanza: str, backup_type: str, repo: int | None = None) -> list[str]:
    """The command that takes one backup into ``repo`` (default: pgBackRest's, ``repo1``); retention is applied
    by pgBackRest's expire at its end."""
    return [pgbackrest, f"--stanza={stanza}", "backup", f"--type={backup_type}", *([f"--repo={repo}"] if repo else [])]


def info_command(pgbackrest: str, stanza: str) -> list[str]:
    return [pgbackrest, f"--stanza={stanza}", "--output=json", "info"]


def stanza_create_command(pgbackrest: str, stanza: str) -> list[str]:
    return [pgbackrest, f"--stanza={stanza}", "stanza-create"]


# -- metrics ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Archiver:
    """``pg_stat_archiver`` of the local member, and WAL segments waiting to be archived."""

    archived_count: int
    failed_count: int
    last_archived: float | None
    last_failed: float | None
    ready_segments: int


ARCHIVER_SQL = (
    "SELECT archived_count, failed_count, coalesce(extract(epoch FROM last_archived_time)::text, ''),"
    " coalesce(extract(epoch FROM last_failed_time)::text, '') FROM pg_stat_archiver"
)


def parse_archiver(psql_output: str, ready_segments: int) -> Archiver | None:
    """Parse ``psql -AtF'|' -c ARCHIVER_SQL`` output."""
    try:
        archived, failed, last_ok, last_bad = psql_output.strip().split("|")
        return Archiver(int(archived), int(failed), float(last_ok) if last_ok else None,
                        float(last_bad) if last_bad else None, ready_segments)
    except ValueError:
        return None


@dataclasses.dataclass
class AgentStatus:
    """Everything ``/metrics`` shows; replaced as a whole by the loop."""

    repo: RepoState | None = None
    archiver: Archiver | None = None
    leader: bool = False
    running: str | None = None
    runs: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    """(type, result) -> count of backups this agent ran."""
    last_run_success: dict[str, bool] = dataclasses.field(default_factory=dict)


METRICS: Mapping[str, tuple[str, str]] = {
    "pgbackrest_repo_up": ("gauge", "1 when pgbackrest info succeeds and the stanza is usable (or not created yet)"),
    "pgbackrest_backup_last_completed_timestamp_seconds": ("gauge", "Stop time of the newest backup per type"),
    "pgbackrest_backup_last_duration_seconds": ("gauge", "Duration of the newest backup per type"),
    "pgbackrest_backup_last_size_bytes": ("gauge", "Repository size of the newest backup per type"),
    "pgbackrest_backup_running": ("gauge", "1 while this agent runs a backup"),
    "pgbackrest_backup_runs_total": ("counter", "Backups this agent ran, by type and result"),
    "pgbackrest_backup_last_run_success": ("gauge", "1 when this agent's last backup of the type succeeded"),
    "pgbackrest_agent_leader": ("gauge", "1 on the member whose agent may run backups (Patroni leader)"),
    "pg_stat_archiver_archived_count": ("counter", "WAL files archived (pg_stat_archiver)"),
    "pg_stat_archiver_failed_count": ("counter", "Failed WAL archive attempts (pg_stat_archiver)"),
    "pg_stat_archiver_last_archived_timestamp_seconds": ("gauge", "Time of the last archived WAL file"),
    "pg_stat_archiver_last_failed_timestamp_seconds": ("gauge", "Time of the last failed archive attempt"),
    "pg_stat_archiver_ready_segments": ("gauge", "WAL segments waiting to be archived (archive_status/*.ready)"),
}
"""Every metric the agent exports: name -> (type, help)."""


def render_metrics(status: AgentStatus) -> str:
    """Prometheus text exposition of ``status``."""
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in METRICS}
    repo = status.repo
    samples["pgbackrest_repo_up"].append(("", 1.0 if repo is not None and repo.ok else 0.0))
    for record in (repo.newest.values() if repo is not None else []):
        label = f'{{type="{record.type}"}}'
        samples["pgbackrest_backup_last_completed_timestamp_seconds"].append((label, record.stop))
        samples["pgbackrest_backup_last_duration_seconds"].append((label, record.stop - record.start))
        samples["pgbackrest_backup_last_size_bytes"].append((label, float(record.size_bytes)))
    samples["pgbackrest_backup_running"].append(("", 1.0 if status.running else 0.0))
    samples["pgbackrest_agent_leader"].append(("", 1.0 if status.leader else 0.0))
    for backup_type in BACKUP_TYPES:
        for result in ("success", "failure"):
            count = status.runs.get((backup_type, result), 0)
            samples["pgbackrest_backup_runs_total"].append((f'{{type="{backup_type}",result="{result}"}}', count))
    for backup_type, ok in status.last_run_success.items():
        samples["pgbackrest_backup_last_run_success"].append((f'{{type="{backup_type}"}}', 1.0 if ok else 0.0))
    archiver = status.archiver
    if archiver is not None:
        samples["pg_stat_archiver_archived_count"].append(("", archiver.archived_count))
        samples["pg_stat_archiver_failed_count"].append(("", archiver.failed_count))
        samples["pg_stat_archiver_ready_segments"].append(("", archiver.ready_segments))
        if archiver.last_archived is not None:
            samples["pg_stat_archiver_last_archived_timestamp_seconds"].append(("", archiver.last_archived))
        if archiver.last_failed is not None:
            samples["pg_stat_archiver_last_failed_timestamp_seconds"].append(("", archiver.last_failed))
    lines = []
    for name, (kind, text) in METRICS.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{labels} {value:.17g}" for labels, value in samples[name]]
    return "\n".join(lines) + "\n"


# -- the loop ---------------------------------------------------------------------------------------

log = logging.getLogger("backup-agent")
Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def _run(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, check=False)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    stanza: str
    schedules: Mapping[str, Cron]
    patroni_url: str = "http://127.0.0.1:8008"
    patroni_ca: str | None = None
    """With an ``https`` URL: the CA the REST API's certificate must chain to (on loopback its name is not
    checked: the certificate names the member's DNS name, and nothing but this pod answers on 127.0.0.1)."""
    pgbackrest: str = "pgbackrest"
    data_dir: str = "/home/postgres/pgdata/data"
    socket_dir: str = "/var/run/postgresql"
    port: int = 5432
    interval_seconds: float = 60.0
    retry_seconds: float = 900.0
    """After a failed backup, wait this long before trying the same type again."""
    backup_timeout_seconds: float = 24 * 3600.0
    repositories: int = 1
    """Repositories in ``pgbackrest.conf`` (``repo1``..``repoN``): each gets every scheduled backup."""


class Agent:
    """One loop iteration at a time (:meth:`tick`); :func:`main` runs it forever."""

    def __init__(self, config: AgentConfig, run: Runner = _run) -> None:
        self.config = config
        self.status = AgentStatus()
        self._run = run
        self._failed_at: dict[tuple[str, int], float] = {}
        self.repos: list[RepoState] = []

    def _tls(self) -> ssl.SSLContext | None:
        if not self.config.patroni_url.startswith("https:"):
            return None
        context = ssl.create_default_context(cafile=self.config.patroni_ca)
        context.check_hostname = False
        return context

    def is_leader(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.config.patroni_url}/primary", timeout=5, context=self._tls()) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def read_repo(self) -> RepoState:
        """All repositories as one (:func:`stalest`); :attr:`repos` keeps each one's own state."""
        result = self._run(info_command(self.config.pgbackrest, self.config.stanza), 300)
        if result.returncode != 0:
            log.warning("pgbackrest info failed: %s", result.stderr.strip()[-500:])
            self.repos = [RepoState(ok=False, stanza_exists=False, newest={})] * self.config.repositories
        else:
            self.repos = [parse_info(result.stdout, self.config.stanza, repo)
                          for repo in range(1, self.config.repositories + 1)]
        return stalest(self.repos)

    def read_timeline(self) -> int | None:
        """The local server's timeline (None when psql fails: the schedules alone decide)."""
        result = self._run(self._psql("SELECT timeline_id FROM pg_control_checkpoint()"), 30)
        try:
            return int(result.stdout.strip()) if result.returncode == 0 else None
        except ValueError:
            return None

    def _psql(self, sql: str) -> list[str]:
        return ["psql", "-X", "-h", self.config.socket_dir, "-p", str(self.config.port), "-U", "postgres",
                "-d", "postgres", "-AtF|", "-c", sql]

    def read_archiver(self) -> Archiver | None:
        result = self._run(self._psql(ARCHIVER_SQL), 30)
        ready = len(glob.glob(os.path.join(self.config.data_dir, "pg_wal", "archive_status", "*.ready")))
        return parse_archiver(result.stdout, ready) if result.returncode == 0 else None

    def tick(self, now: dt.datetime) -> str | None:
        """Refresh metrics; on the leader, create the stanza if needed and run a due backup. Returns
        the type of backup run, if any."""
        status = self.status
        status.repo, status.archiver, status.leader = self.read_repo(), self.read_archiver(), self.is_leader()
        if not status.leader:
            return None
        stanza = self.config.stanza
        if not status.repo.stanza_exists:
            created = self._run(stanza_create_command(self.config.pgbackrest, stanza), 600)
            log.info("stanza-create %s: exit %s %s", stanza, created.returncode, created.stderr.strip()[-500:])
            status.repo = self.read_repo()
            if not status.repo.stanza_exists:
                return None  # e.g. the archive lock of a pending archive-push: try again next loop
        timeline = self.read_timeline()
        due = [(backup_type, repo) for repo, state in enumerate(self.repos, start=1)
               if (backup_type := due_backup(self.config.schedules, state, now, timeline)) is not None
               and now.timestamp() - self._failed_at.get((backup_type, repo), 0.0) >= self.config.retry_seconds]
        if not due:
            return None
        backup_type, repo = due[0]  # one backup per loop; the next loop sees the others still due
        status.running = backup_type
        try:
            result = self._run(backup_command(self.config.pgbackrest, stanza, backup_type,
                                              repo if self.config.repositories > 1 else None),
                               self.config.backup_timeout_seconds)
            ok = result.returncode == 0
        except subprocess.TimeoutExpired:
            ok, result = False, None
        finally:
            status.running = None
        key = (backup_type, "success" if ok else "failure")
        status.runs[key] = status.runs.get(key, 0) + 1
        status.last_run_success[backup_type] = ok
        if ok:
            self._failed_at.pop((backup_type, repo), None)
        else:
            self._failed_at[(backup_type, repo)] = now.timestamp()
            log.error("%s backup into repo%d failed: %s", backup_type, repo,
                      result.stderr.strip()[-2000:] if result else "timeout")
        status.repo = self.read_repo()
        return backup_type


def serve_metrics(agent: Agent, port: int) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = render_metrics(agent.status).encode() if self.path.startswith("/metrics") else b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--full", required=True, help="cron schedule of full backups (UTC)")
    parser.add_argument("--diff", help="cron schedule of differential backups (UTC)")
    parser.add_argument("--port", type=int, default=9188)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--patroni-url", default=AgentConfig.patroni_url, help="this member's Patroni REST API")
    parser.add_argument("--patroni-ca", help="CA file for an https --patroni-url")
    parser.add_argument("--repositories", type=int, default=1, help="repositories in pgbackrest.conf (repo1..N)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    schedules = {"full": parse_cron(args.full), **({"diff": parse_cron(args.diff)} if args.diff else {})}
    agent = Agent(AgentConfig(stanza=args.stanza, schedules=schedules, interval_seconds=args.interval,
                              patroni_url=args.patroni_url, patroni_ca=args.patroni_ca,
                              repositories=args.repositories))
    serve_metrics(agent, args.port)
    while True:
        started = time.monotonic()
        try:
            ran = agent.tick(dt.datetime.now(dt.timezone.utc))
            if ran:
                log.info("%s backup finished", ran)
        except Exception:  # the loop must survive anything one iteration hits
            log.exception("backup agent iteration failed")
        time.sleep(max(1.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    main()

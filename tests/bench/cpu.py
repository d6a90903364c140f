"""CPU seconds per component during a stage: what the two cores were spent on.

Components: the API (gunicorn master + workers), the Celery worker, the Stripe
emulator, the load generator, PostgreSQL (the sessions of the bench's database and the
server's shared processes: WAL writer, checkpointer…; sessions of other databases count
as "other"), Redis/Valkey (one process, shared: other users' commands included), the
bench process itself, "steal" (time the hypervisor ran other guests instead of ours) and
"other" = machine busy time minus all of these (other work on the machine: noise).
A process that exits during a stage loses its CPU from the count (PostgreSQL backends
of pooled connections live for the whole run, so this is small).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

NAMED = {"postgres": "postgres", "redis-server": "redis", "valkey-server": "redis"}


@dataclass
class Snapshot:
    wall: float
    busy: float  # machine CPU seconds not idle (steal included)
    steal: float  # CPU seconds the hypervisor gave to other guests
    per_pid: dict[int, tuple[str, float]]


def _machine() -> tuple[float, float]:
    t = psutil.cpu_times()
    # guest time is already counted in user time on Linux
    skip = ("idle", "iowait", "guest", "guest_nice")
    busy = sum(float(v) for k, v in t._asdict().items() if k not in skip)
    return busy, float(getattr(t, "steal", 0.0))


class CpuMeter:
    def __init__(self, roles: Callable[[], dict[str, list[int]]]) -> None:
        self._roles = roles
        self.database = ""  # PostgreSQL sessions of this database are ours

    def _postgres_is_ours(self, proc: psutil.Process) -> bool:
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            return False
        if self.database and self.database in title:
            return True
        # A session ("user db host(port) state") or an autovacuum worker of another
        # database is someone else's; the postmaster and shared processes serve us too.
        session = "(" in title or "[local]" in title or "autovacuum worker" in title
        return not session

    def snapshot(self, extra: dict[str, list[int]] | None = None) -> Snapshot:
        by_pid: dict[int, str] = {os.getpid(): "bench"}
        for name, pids in {**self._roles(), **(extra or {})}.items():
            for pid in pids:
                by_pid[pid] = name
        per_pid: dict[int, tuple[str, float]] = {}
        for proc in psutil.process_iter(["name"]):
            role = by_pid.get(proc.pid) or NAMED.get(proc.info["name"] or "")
            if role is None or (role == "postgres" and not self._postgres_is_ours(proc)):
                continue
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            per_pid[proc.pid] = (role, t.user + t.system)
        busy, steal = _machine()
        return Snapshot(time.perf_counter(), busy, steal, per_pid)

    @staticmethod
    def seconds(before: Snapshot, after: Snapshot) -> tuple[dict[str, float], float]:
        """CPU seconds per component between two snapshots, and the wall time."""
        used: dict[str, float] = {}
        for pid, (role, cpu) in after.per_pid.items():
            start = before.per_pid.get(pid)
            delta = cpu - (start[1] if start and start[0] == role else 0.0)
            used[role] = used.get(role, 0.0) + max(delta, 0.0)
        busy = after.busy - before.busy
        steal = after.steal - before.steal
        used["other"] = max(busy - steal - sum(used.values()), 0.0)
        used["steal"] = steal
        used["machine"] = busy
        return used, max(after.wall - before.wall, 1e-9)

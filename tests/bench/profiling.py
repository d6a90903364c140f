"""Optional profiles (BENCH_PROFILE=1): py-spy samples the processes serving a stage.

py-spy is not a project dependency; when it is not installed the bench says so and
goes on. It samples wall-clock time (`--idle`: waiting on PostgreSQL, Redis or Stripe
counts), so a profile shows where a request's time goes, not only its CPU. Profiles are
written as py-spy's raw collapsed stacks (flamegraph input) to
var/bench/profiles/<run>/<stage>.txt, with a summary (<stage>.summary.txt) over the
samples in which a process was handling a request or a task.
Sampling costs CPU on a 2-core machine: a profiled run's figures are not comparable
with an unprofiled one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Profile:
    """py-spy record on one process tree (--subprocesses) for `seconds`."""

    def __init__(
        self, binary: str, pid: int, seconds: float, out: Path, *, focus: str | None
    ) -> None:
        self.out = out
        self.focus = focus
        args = [binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
        args += ["--rate", "200", "--duration", str(max(1, round(seconds))), "--format", "raw"]
        args += ["--output", str(out), "--idle"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )

    def finish(self, timeout: float = 30) -> str | None:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return None
        if not self.out.exists():
            return (err or b"").decode(errors="replace")[-500:] or "no profile written"
        summary = summarize(self.out, self.focus)
        self.out.with_suffix(".summary.txt").write_text(summary)
        return None


ROOT = str(Path(__file__).resolve().parents[2]) + "/"
PROJECT = ("shared/", "services/")  # py-spy shortens paths relative to sys.path
# Stacks of a process that is handling work (not waiting for it).
FOCUS = {"api": "Flask.wsgi_app (", "worker": "trace_task ("}


def _frame(raw: str) -> tuple[str, bool] | None:
    """`function (/abs/path/file.py:123)` -> (`function (pkg/file.py)`, is project code);
    None for py-spy's process and thread pseudo-frames."""
    if raw.startswith(("process ", "thread ")):
        return None
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if path.startswith(ROOT) and "/.venv/" not in path:
        path = path[len(ROOT) :]
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1].lstrip("0123456789./")
            break
    return f"{name} ({path})", path.startswith(PROJECT)


def summarize(path: Path, focus: str | None = None, top: int = 20) -> str:
    """Shares of the samples in which the process was handling work (`focus` frame in
    the stack; all samples without a focus): by deepest project frame (where in our code
    the time goes, callees included), by leaf frame (self), and inclusive."""
    deepest: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = focused = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        if focus is not None and focus not in stack:
            continue
        focused += n
        frames = [f for f in map(_frame, stack.split(";")) if f]
        if not frames:
            continue
        self_time[frames[-1][0]] += n
        own = [name for name, mine in frames if mine]
        deepest[own[-1] if own else "(outside project code)"] += n
        for name in {name for name, _ in frames}:
            inclusive[name] += n
    if focused == 0:
        return f"{total} samples, none handling work\n"
    lines = [f"{total} samples; handling work in {focused} ({focused / total:.0%})"]
    if focus:
        lines.append(f"(shares below are of those {focused}: stacks containing {focus!r})")
    lines += ["", "deepest project frame (callees included):"]
    lines += [f"  {n / focused:6.1%}  {f}" for f, n in deepest.most_common(top)]
    lines += ["", "self (top of the stack):"]
    lines += [f"  {n / focused:6.1%}  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "inclusive (anywhere in the stack; frames in every stack left out):"]
    common = [(f, n) for f, n in inclusive.most_common() if n < focused * 0.99]
    lines += [f"  {n / focused:6.1%}  {f}" for f, n in common[: top * 2]]
    return "\n".join(lines) + "\n"

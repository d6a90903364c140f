"""The directory prometheus_client's multiprocess mode shares between processes.

gunicorn's workers and Celery's prefork children each write their samples to files in
PROMETHEUS_MULTIPROC_DIR; whoever serves /metrics adds them up. prometheus_client
decides at import whether it is in that mode, so the process entry points call
`ensure()` before anything imports it — this module must not import it either.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# "<path>:<pid>" of a directory `ensure` made, so that only the process that made it
# removes it (a forked gunicorn worker or pool child inherits the environment and atexit).
_MADE = "INKFLOW_METRICS_DIR_MADE"


def ensure() -> Path:
    """PROMETHEUS_MULTIPROC_DIR names a directory, for this process and those it starts
    (they inherit the environment). Unset, a fresh private one is made, removed when
    this process exits."""
    given = os.environ.get(ENV, "").strip()
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    made = Path(tempfile.mkdtemp(prefix="inkflow-metrics-"))
    os.environ[ENV] = str(made)
    os.environ[_MADE] = f"{made}:{os.getpid()}"
    atexit.register(cleanup)
    return made


def wipe() -> None:
    """Remove the sample files of a previous run (counters of processes long gone would
    otherwise be added to this run's): a server's master calls it before it forks."""
    given = os.environ.get(ENV, "").strip()
    if given:
        # Only prometheus_client's own files: the variable might name a shared directory.
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)


def prepare() -> Path:
    directory = ensure()
    wipe()
    return directory


def cleanup() -> None:
    """Remove the directory `ensure` made, in the process that made it (never one the
    operator named)."""
    path, _, pid = os.environ.get(_MADE, "").rpartition(":")
    if path and pid == str(os.getpid()) and os.environ.get(ENV) == path:
        shutil.rmtree(path, ignore_errors=True)

"""The emulator's state on disk, so that objects, idempotency keys and webhook deliveries
still due survive a restart (``--state var/stripe/state.json`` under ``make run``).

One JSON document, written atomically (a temporary file in the same directory, fsync,
rename): a crash leaves the previous state or the new one, never half of one. A
``Saver`` thread writes at most every ``interval`` seconds after a change, so a burst of
API calls costs one write; ``stop()`` writes what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from devtools.stripe_emulator.store import JSON

VERSION = 1


def load(path: Path) -> JSON | None:
    """The saved state, or None when there is none yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a state file of this emulator (version {VERSION})")
    return data


def save(path: Path, data: JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump({"version": VERSION, **data}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Saver:
    """Saves ``snapshot()`` to ``path`` in the background after ``changed()``."""

    def __init__(self, path: Path, snapshot: Callable[[], JSON], interval: float = 0.2) -> None:
        self.path, self._snapshot, self._interval = path, snapshot, interval
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.save_now()

    def save_now(self) -> None:
        self._dirty.clear()
        save(self.path, self._snapshot())

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._stopping.wait(self._interval)  # let a burst of changes settle
            self.save_now()

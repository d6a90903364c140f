"""devtools.processes: children started, awaited and stopped as `make run`, the bench and
the end-to-end tests need it — real processes and signals."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from devtools.processes import (
    Child,
    ChildError,
    port_is_open,
    process_gone,
    same_process,
    stop_all,
)
from tests.support import free_port

PY = sys.executable


def python(code: str) -> list[str]:
    return [PY, "-u", "-c", code]


def test_log_file_child_ready_on_a_line_and_stopped_with_sigterm(tmp_path: Path) -> None:
    child = Child(
        "sleeper",
        python("import time; print('up', flush=True); time.sleep(60)"),
        env=os.environ,
        log_path=tmp_path / "logs" / "sleeper.log",
    )
    child.wait_ready(lambda: child.printed("up"), timeout=10)
    entry = child.identity()
    assert same_process(entry) is not None

    began = time.monotonic()
    child.stop()
    assert time.monotonic() - began < 5
    assert child.returncode == -signal.SIGTERM
    assert same_process(entry) is None
    assert child.output() == "up\n" == (tmp_path / "logs" / "sleeper.log").read_text()


def test_relayed_child_sends_each_line_and_keeps_the_last() -> None:
    lines: list[str] = []
    child = Child("counter", python("for i in range(3): print(f'line {i}')"), env=os.environ,
                  on_line=lines.append)  # fmt: skip
    assert child.wait(10) == 0
    child.close()
    assert lines == ["line 0", "line 1", "line 2"]
    assert child.output() == "line 0\nline 1\nline 2"


def test_a_child_that_exits_at_start_up_is_reported_with_its_output(tmp_path: Path) -> None:
    child = Child(
        "broken",
        python("import sys; print('no database'); sys.exit(3)"),
        env=os.environ,
        log_path=tmp_path / "broken.log",
    )
    with pytest.raises(ChildError, match=r"broken exited with status 3 at start-up:\nno database"):
        child.wait_ready(lambda: port_is_open(free_port()), timeout=10)


def test_a_child_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    child = Child("slow", python("import time; time.sleep(60)"), env=os.environ,
                  log_path=tmp_path / "slow.log")  # fmt: skip
    with pytest.raises(ChildError, match="slow did not listen within 0 s"):
        child.wait_ready(lambda: False, timeout=0.3, what="listen")
    assert not child.alive()


def test_sigkill_after_the_timeout_and_nothing_left_behind(tmp_path: Path) -> None:
    """A parent that ignores SIGTERM is killed; the grandchild it started goes too."""
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(grandchild.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = Child("stubborn", python(code), env=os.environ, log_path=tmp_path / "s.log")
    polite = Child("polite", python("import time; time.sleep(60)"), env=os.environ,
                   log_path=tmp_path / "p.log")  # fmt: skip
    stubborn.wait_ready(lambda: stubborn.output().strip().isdigit(), timeout=10)
    grandchild = psutil.Process(int(stubborn.output()))
    said: list[str] = []

    began = time.monotonic()
    stop_all([stubborn, polite], timeout=0.5, say=said.append)
    assert 0.5 <= time.monotonic() - began < 5
    assert (stubborn.returncode, polite.returncode) == (-signal.SIGKILL, -signal.SIGTERM)
    assert said == ["stubborn: not stopped in 0 s, sending SIGKILL"]
    assert process_gone(grandchild)


def test_hurry_kills_at_once(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    child = Child("stubborn", python(code), env=os.environ, log_path=tmp_path / "s.log")
    began = time.monotonic()
    child.stop(timeout=30, hurry=True)
    assert time.monotonic() - began < 5
    assert child.returncode == -signal.SIGKILL

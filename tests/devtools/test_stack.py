"""`make run` (python -m devtools.stack) as a newcomer uses it: it starts, serves the
README's requests with the Stripe emulator it started, and Ctrl-C stops every process
it started. On the test database and Redis (the embedded servers have their own tests),
on ports and a var dir of its own, so that a developer's `make run` does not interfere."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests

from devtools.processes import Backoff, Child, port_is_open, process_gone, same_process
from devtools.stack import Console, Stack
from tests import support


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"inkflow-test-stack-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"*{name}*"))
    client.close()


def test_make_run_serves_the_readme_requests_and_ctrl_c_stops_everything(
    database_url: str, queue: str, tmp_path: Path
) -> None:
    api_port, stripe_port = support.free_port(), support.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": support.TEST_REDIS_URL,
        "CELERY_QUEUE": queue,
        "PORT": str(api_port),
        "WEB_CONCURRENCY": "1",
        # Empty counts as unset for the stack and keeps a developer's .env out of it.
        "STRIPE_SECRET_KEY": "",
        "STRIPE_API_BASE": "",
        "ADMIN_API_TOKEN": "",
        "CELERY_BROKER_URL": "",
        "AUTH_JWT_SECRET": "",
        "HOST": "",
    }
    var_dir = tmp_path / "var"
    args = ["--var-dir", str(var_dir), "--stripe-port", str(stripe_port)]
    stack = Child(
        "stack",
        [sys.executable, "-m", "devtools.stack", *args],
        env=env,
        log_path=tmp_path / "stack.log",
    )
    try:
        stack.wait_ready(lambda: stack.printed("inkflow is running"), timeout=120)
        state = json.loads((var_dir / "stack.json").read_text())
        names = sorted(entry["name"] for entry in state["children"])
        assert names == ["api", "beat", "stripe", "worker"]
        processes = []
        for entry in state["children"]:
            proc = same_process(entry)
            assert proc is not None, entry
            processes += [proc, *proc.children(recursive=True)]  # gunicorn's and Celery's too

        api = f"http://127.0.0.1:{api_port}"
        assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
        printed = stack.full_output()
        assert "STRIPE_API_BASE=http://127.0.0.1:" + str(stripe_port) in printed
        match = re.search(r"-d '(\{.*\})'", printed)
        assert match is not None, printed
        answer = requests.post(f"{api}/api/availability", json=json.loads(match[1]), timeout=10)
        assert answer.status_code == 200, answer.text
        assert any(slot["available"] for slot in answer.json()["slots"])
        artists = requests.get(
            f"{api}/api/admin/artists",
            headers={"Authorization": "Bearer dev-admin-token"},
            timeout=10,
        )
        assert artists.status_code == 200
        assert f"{api}/docs" in printed
        for command in ("inkflow pay", "inkflow trigger", "inkflow events replay"):
            assert command in printed

        # The settings it chose, for the CLI in a second terminal (nothing exported).
        run_env = var_dir / "run.env"
        assert run_env.stat().st_mode & 0o777 == 0o600
        settings = dict(
            line.split("=", 1) for line in run_env.read_text().splitlines() if "=" in line
        )
        assert settings["INKFLOW_API_URL"] == api
        assert settings["STRIPE_EMULATOR_URL"] == f"http://127.0.0.1:{stripe_port}"
        assert settings["ADMIN_API_TOKEN"] == "dev-admin-token"
        assert settings["DATABASE_URL"] == database_url
        started = time.monotonic()
        demo = subprocess.run(
            [sys.executable, "-m", "services.cli", "demo"],
            env={"PATH": os.environ["PATH"], "INKFLOW_RUN_ENV": str(run_env)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert took < 10, demo.stdout
        assert "Webhook  payment_intent.succeeded" in demo.stdout
        assert re.search(r"^CONFIRMED  after", demo.stdout, re.MULTILINE), demo.stdout
        emails = re.findall(r"BOOKING_CONFIRMED\s+to (\S+)\s+SENT", demo.stdout)
        assert sorted(emails) == ["demo-artist@inkflow.local", "demo-client@inkflow.local"]

        # The worker crashes (SIGKILL, as the OOM killer does): started again, the API stays.
        [worker] = [e for e in state["children"] if e["name"] == "worker"]
        killed = same_process(worker)
        assert killed is not None
        pool = killed.children(recursive=True)
        killed.kill()
        assert support.wait_until(lambda: stack.printed("worker started again"), timeout=30)
        restarted = json.loads((var_dir / "stack.json").read_text())
        [again] = [e for e in restarted["children"] if e["name"] == "worker"]
        assert again["pid"] != worker["pid"]
        assert psutil.wait_procs(pool, timeout=5)[1] == [] or all(map(process_gone, pool))
        new_worker = same_process(again)
        assert new_worker is not None
        processes += [new_worker, *new_worker.children(recursive=True)]
        assert support.wait_until(lambda: stack.full_output().count("ready.") >= 2, timeout=30), (
            stack.output()
        )
        assert requests.get(f"{api}/readyz", timeout=10).status_code == 200

        stack.process.send_signal(signal.SIGINT)
        assert stack.wait(60) == 0
        assert stack.output().rstrip().endswith("All stopped.")
        assert psutil.wait_procs(processes, timeout=5)[1] == [] or all(map(process_gone, processes))
        assert not port_is_open(api_port)
        assert not port_is_open(stripe_port)
        assert not (var_dir / "stack.json").exists()
        assert not run_env.exists()
        # The emulator's state stays for the next run.
        state = json.loads((var_dir / "stripe" / "state.json").read_text())
        assert any(e["type"] == "payment_intent.succeeded" for e in state["events"].values())
    finally:
        stack.stop()


class Recorder(io.StringIO):
    def isatty(self) -> bool:
        return False


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_a_worker_that_exits_is_started_again_and_the_api_exiting_stops_everything(
    tmp_path: Path,
) -> None:
    """The supervision policy of `make run`, with stand-in processes: worker and beat are
    started again when they exit; the API exiting ends the watch (then everything stops)."""
    out = Recorder()
    restart = Backoff(first=0.2, cap=0.4, stable=30, give_up_after=0)
    stack = Stack(var_dir=tmp_path / "var", console=Console(out), restart=restart)
    stack.var_dir.mkdir()
    try:
        stack.spawn("worker", python("import time; time.sleep(0.3)"), supervised=True)
        api = stack.spawn("api", python("import time; time.sleep(2.5)"))
        began = time.monotonic()
        assert stack.watch(poll=0.05) is api
        assert time.monotonic() - began > 2
        worker = stack.supervised["worker"]
        assert worker.restarts >= 3
        assert set(worker.exits) == {0}
        assert "worker exited (status 0) after 0." in out.getvalue()
        state = json.loads(stack.state_file.read_text())
        assert {e["name"]: e["pid"] for e in state["children"]}["worker"] == worker.child.pid
    finally:
        stack.stop()
    assert not any(c.alive() for c in stack.children)


def test_a_worker_that_keeps_exiting_at_once_is_given_up(tmp_path: Path) -> None:
    out = Recorder()
    restart = Backoff(first=0.1, cap=0.1, stable=30, give_up_after=3)
    stack = Stack(var_dir=tmp_path / "var", console=Console(out), restart=restart)
    stack.var_dir.mkdir()
    try:
        api = stack.spawn("api", python("import time; time.sleep(60)"))
        worker = stack.spawn("worker", python("import sys; sys.exit(1)"), supervised=True)
        given_up = stack.watch(poll=0.05)
        assert given_up is not None
        assert given_up.name == "worker"
        assert given_up is not worker  # the third start
        assert api.alive()
        assert "3 times in a row within 30 s of starting" in out.getvalue()
    finally:
        stack.stop()

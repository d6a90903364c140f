"""`make run` (python -m devtools.stack) as a newcomer uses it: it starts, serves the
README's requests with the Stripe emulator it started, and Ctrl-C stops every process
it started. On the test database and Redis (the embedded servers have their own tests),
on ports and a var dir of its own, so that a developer's `make run` does not interfere."""

from __future__ import annotations

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

from devtools.processes import Child, port_is_open, process_gone, same_process
from tests import support


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"inkflow-test-stack-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    client.delete(name, *client.keys(f"_kombu.binding*{name}*"))
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

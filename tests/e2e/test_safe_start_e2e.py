"""The real processes refuse an unsafe production start: gunicorn (the API) and the Celery
worker and beat exit with status 1 and one line naming the setting when a published
development secret or a short operator token is given without INKFLOW_ENV=development —
and start with the same values once the operator opts in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from devtools import commands
from tests import support

REFUSED = "inkflow: refusing to start with INKFLOW_ENV=production"


def run(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    done = subprocess.run(
        command,
        env=env,
        cwd=support.ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"ADMIN_API_TOKEN": "dev-admin-token"}, "ADMIN_API_TOKEN is the published"),
        ({"ADMIN_API_TOKEN": "x"}, "ADMIN_API_TOKEN is shorter than 32 characters"),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_dev_inkflow"}, "STRIPE_WEBHOOK_SECRET is the published"),
    ],
)
def test_gunicorn_and_celery_refuse_a_development_secret_in_production(
    e2e_env: dict[str, str], change: dict[str, str], named: str, tmp_path: Path
) -> None:
    env = {**e2e_env, **change, "PORT": str(support.free_port()), "WEB_CONCURRENCY": "1"}
    env.pop("INKFLOW_ENV", None)
    programs = [commands.api()]
    if named.startswith("STRIPE"):  # the Celery processes too (once: each takes seconds)
        programs += [
            commands.celery("worker", "--pool=solo", "--without-mingle", "--without-gossip"),
            commands.celery("beat", "--schedule", str(tmp_path / "beat-schedule")),
        ]
    for command in programs:
        status, output = run(command, env)
        assert status == 1, output[-2000:]
        [line] = [line for line in output.splitlines() if REFUSED in line]
        assert named in line
        for value in change.values():
            assert f" {value}" not in line  # the setting's name, never its value


def test_development_opts_in_to_the_same_values(e2e_env: dict[str, str], log_dir: Path) -> None:
    port = support.free_port()
    env = {**e2e_env, "ADMIN_API_TOKEN": "dev-admin-token", "INKFLOW_ENV": "development"}
    server = support.start_gunicorn(env, port, log_dir, workers=1)
    try:
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/admin/clients",
            headers={"Authorization": "Bearer dev-admin-token"},
            timeout=10,
        )
        assert answer.status_code == 200
    finally:
        server.stop()

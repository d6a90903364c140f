"""One fuzz run: a fresh database, the Stripe emulator, gunicorn serving the API on them
(client JWTs on), the seed, then `st run` over the app's own /openapi.json with every
check, and the figures: requests the API served (its access log), 5xx among them, and
what schemathesis found, schema violations apart."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from devtools.stripe_emulator import StripeEmulator
from tests import support
from tests.fuzz.config import write_config
from tests.fuzz.seed import seed

# schemathesis's failure codes that mean "the answer is not what the document says".
SCHEMA_CHECKS = {
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
}
_ACCESS_LINE = re.compile(r"^(\d{3}) (\S+) (.*)$")
OPERATOR_TOKEN = "fuzz-operator-token-" + "o" * 24


@dataclass(frozen=True)
class FuzzOptions:
    seed: int | None  # None: random
    max_examples: int = 20
    phases: str = "examples,coverage,fuzzing,stateful"
    # One: Python 3.11's ast.parse is not thread-safe, and Hypothesis parses lambdas
    # while describing strategies (a SystemError under --workers 2).
    workers: int = 1
    max_time: int | None = None
    gunicorn_workers: int = 2
    # Also draw the bearer tokens (garbage JWTs …) instead of sending the seed's: thorough,
    # but then a third of a small budget is 401s. The ignored_auth check sends requests
    # without and with a wrong token either way.
    draw_tokens: bool = True
    extra_args: Sequence[str] = ()


@dataclass
class FuzzReport:
    seed: int | None
    seconds: float
    requests: int
    server_errors: int
    test_cases: int
    schema_violations: int
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_code: int = 0
    run_dir: Path | None = None
    # schemathesis's account of what failed (with a curl command for each), kept in the
    # report: a test's temporary directory does not outlive a few later runs.
    excerpt: str = ""

    @property
    def clean(self) -> bool:
        return not (self.server_errors or self.failures or self.errors) and self.exit_code == 0

    def summary(self) -> str:
        lines = [
            f"fuzz: {self.requests} requests served ({self.test_cases} test cases generated) "
            f"in {self.seconds:.0f} s, seed {self.seed}: {self.server_errors} answered 5xx, "
            f"{self.schema_violations} schema violations, {len(self.failures)} kinds of "
            f"failure, {len(self.errors)} errors",
            *(f"  failure: {line}" for line in self.failures),
            *(f"  error: {line}" for line in self.errors),
        ]
        if self.run_dir is not None:
            lines.append(f"  details: {self.run_dir}")
        if self.excerpt:
            lines.append(self.excerpt)
        return "\n".join(lines)


def _served(access_log: Path) -> tuple[int, int, list[str]]:
    """(requests, 5xx answers, the 5xx lines) from gunicorn's access log."""
    requests = errors = 0
    lines: list[str] = []
    if not access_log.exists():
        return 0, 0, []
    for line in access_log.read_text(errors="replace").splitlines():
        found = _ACCESS_LINE.match(line)
        if found is None:
            continue
        requests += 1
        if found[1].startswith("5"):
            errors += 1
            lines.append(line[:200])
    return requests, errors, lines


def _excerpt(log: Path, limit: int = 6000) -> str:
    """The ERRORS and FAILURES sections of schemathesis's output."""
    if not log.exists():
        return ""
    text = log.read_text(errors="replace")
    start = min(
        (i for i in (text.find("= ERRORS ="), text.find("= FAILURES =")) if i >= 0), default=-1
    )
    if start < 0:
        return ""
    start = text.rfind("\n", 0, start) + 1
    end = text.rfind("\n", 0, text.find("= WARNINGS =", start))
    return text[start : end if end > start else None][:limit]


def _st_command(options: FuzzOptions, config: Path, report: Path, url: str) -> list[str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--mode",
        "all",
        "--phases",
        options.phases,
        "--max-examples",
        str(options.max_examples),
        "--workers",
        str(options.workers),
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
    ]
    if options.seed is not None:
        command += ["--seed", str(options.seed), "--generation-deterministic"]
    else:
        command += ["--generation-database", "none"]
    if options.max_time is not None:
        command += ["--max-time", str(options.max_time)]
    if not options.draw_tokens:
        command += ["--generation-with-security-parameters", "false"]
    return command + list(options.extra_args)


def _findings(report: dict[str, Any]) -> tuple[int, int, list[str], list[str]]:
    cases = report.get("test_cases") or {}
    failures = [
        f"{group['code']}: {group['title']} x{group['count']} ({', '.join(group['operations'])})"
        for group in report.get("failures", [])
    ]
    violations = sum(
        group["count"] for group in report.get("failures", []) if group["code"] in SCHEMA_CHECKS
    )
    errors = [f"{error['title']} x{error['count']}" for error in report.get("errors", [])]
    return int(cases.get("generated", 0)), violations, failures, errors


def fuzz(options: FuzzOptions, run_dir: Path) -> FuzzReport:
    """Run it all; everything it started is stopped and its database dropped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    database_url = support.create_database()
    queue = f"inkflow-fuzz-{uuid.uuid4().hex[:8]}"
    jwt_secret = secrets.token_hex(32)
    access_log = run_dir / "access.log"
    try:
        with StripeEmulator() as emulator:
            env = support.base_env(
                database_url,
                STRIPE_API_BASE=emulator.url,
                STRIPE_MAX_RETRIES="0",
                STRIPE_TIMEOUT_SECONDS="5",
                CELERY_QUEUE=queue,
                AUTH_JWT_SECRET=jwt_secret,
                ADMIN_API_TOKEN=OPERATOR_TOKEN,
                LOG_LEVEL="WARNING",
                GUNICORN_ACCESS_LOG=str(access_log),
                GUNICORN_CMD_ARGS="--access-logformat " + shlex.quote("%(s)s %(m)s %(U)s"),
            )
            port = support.free_port()
            server = support.start_gunicorn(env, port, run_dir, workers=options.gunicorn_workers)
            try:
                url = f"http://127.0.0.1:{port}"
                made = seed(url, OPERATOR_TOKEN, jwt_secret)
                seed_file = run_dir / "seed.json"
                made.save(seed_file)
                config = write_config(made, run_dir / "schemathesis.toml")
                seeded, _, _ = _served(access_log)
                report_file = run_dir / "report.json"
                st_env = {
                    **os.environ,
                    "PYTHONPATH": str(support.ROOT),
                    "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks",
                    "INKFLOW_FUZZ_SEED": str(seed_file),
                    "INKFLOW_FUZZ_WEBHOOK_SECRET": support.WEBHOOK_SECRET,
                }
                with (run_dir / "schemathesis.log").open("w") as output:
                    finished = subprocess.run(
                        _st_command(options, config, report_file, url),
                        env=st_env,
                        cwd=run_dir,  # its cache (.schemathesis/) goes with the run
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        check=False,
                    )
            finally:
                server.stop()
    finally:
        support.drop_database(database_url)
        _drop_queue(queue)
    served, server_errors, error_lines = _served(access_log)
    report: dict[str, Any] = (
        json.loads(report_file.read_text()) if report_file.exists() else {"errors": []}
    )
    cases, violations, failures, errors = _findings(report)
    if not report_file.exists():
        errors.append("schemathesis wrote no report (see schemathesis.log)")
    return FuzzReport(
        # The seed schemathesis drew when none was given: `make fuzz FUZZ_ARGS="--seed N"`
        # runs the same cases again.
        seed=report.get("seed", options.seed),
        seconds=time.monotonic() - began,
        requests=served - seeded,
        server_errors=server_errors,
        test_cases=cases,
        schema_violations=violations,
        failures=failures + [f"5xx: {line}" for line in error_lines[:10]],
        errors=errors,
        exit_code=finished.returncode,
        run_dir=run_dir,
        excerpt=_excerpt(run_dir / "schemathesis.log") if failures or errors else "",
    )


def _drop_queue(name: str) -> None:
    client = redis.Redis.from_url(support.TEST_REDIS_URL)
    try:
        client.delete(name, *client.keys(f"*{name}*"))
    finally:
        client.close()

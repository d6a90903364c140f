"""schemathesis against the API's own /openapi.json, every operation, with the operator
token and artist and client JWTs, every check (server errors, response schemas, undeclared statuses,
negative data accepted, ignored auth …), on data of its own (tests/fuzz). A fixed seed
and a bounded budget here; `make fuzz` runs it at random and longer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import FuzzOptions, fuzz

SEED = 20261201
MAX_EXAMPLES = 50  # per operation and phase: about 3,000 requests in under a minute


@pytest.mark.slow
def test_the_fuzzer_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = FuzzOptions(seed=SEED, max_examples=MAX_EXAMPLES, draw_tokens=False)
    report = fuzz(options, tmp_path / "fuzz")

    with capsys.disabled():
        print(f"\n{report.summary()}")
    assert report.requests >= 2000, report.summary()
    assert report.server_errors == 0, report.summary()
    assert report.schema_violations == 0, report.summary()
    assert report.clean, report.summary()

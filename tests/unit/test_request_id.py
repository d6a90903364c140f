"""X-Request-ID: which ids a caller may choose, and how log lines carry them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.logging_setup import (
    REQUEST_ID_MAX_LENGTH,
    RequestIdFilter,
    TextFormatter,
    json_formatter,
    new_request_id,
    request_id_bound,
    sanitise_request_id,
)


@pytest.mark.parametrize(
    "raw",
    [
        "a",
        "6f1c2a0e-9b8d-4c7f-a1e2-d3c4b5a69788",
        "Root=1-67891233-abcdef012345678912345678",
        "req_42.retry:1",
        "trace/span+b64==",
        "x" * REQUEST_ID_MAX_LENGTH,
    ],
)
def test_a_sane_id_is_kept(raw: str) -> None:
    assert sanitise_request_id(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "x" * (REQUEST_ID_MAX_LENGTH + 1),
        "has space",
        'quote"d',
        "line\nbreak",
        "tab\t",
        "nul\x00",
        "-starts-with-a-dash",
        "/starts-with-a-slash",
        "ünïcode",
        "semi;colon",
        "<script>",
        "a" * 10_000,
    ],
)
def test_anything_else_is_refused(raw: str | None) -> None:
    assert sanitise_request_id(raw) is None


def test_new_ids_are_sane_and_distinct() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(sanitise_request_id(i) == i and len(i) == 32 for i in ids)


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.request_id.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, stream


def test_json_lines_carry_the_bound_id_and_only_inside() -> None:
    logger, stream = _logger(json_formatter())
    with request_id_bound("req-1"):
        logger.info("booking %s created", "b1")
        with request_id_bound("req-2"):
            logger.warning("nested")
        logger.info("back")
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["request_id"]) for line in lines] == [
        ("booking b1 created", "req-1"),
        ("nested", "req-2"),
        ("back", "req-1"),
        ("outside", None),
    ]
    assert lines[0]["level"] == "INFO"
    assert lines[0]["logger"].startswith("test.request_id")
    assert lines[0]["time"].endswith("+00:00")


def test_text_lines_show_the_id_when_there_is_one() -> None:
    logger, stream = _logger(TextFormatter())
    with request_id_bound("req-9"):
        logger.info("inside")
    logger.info("outside")
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("inside [request_id=req-9]")
    assert outside.endswith(": outside")

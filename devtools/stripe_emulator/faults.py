"""Failure injection: rules that make matching API requests fail or answer late.

A rule selects requests by ``path_prefix`` and ``method``; the first matching rule of a
kind wins. ``remaining`` counts down (the rule goes at 0); ``None`` means always.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from devtools.stripe_emulator.wire import RecordedRequest

Kind = Literal["fail", "delay"]


@dataclass
class Rule:
    kind: Kind
    remaining: int | None  # None: always
    path_prefix: str = "/v1/"
    method: str | None = None
    status: int = 500
    error_type: str = "api_error"
    code: str | None = None
    message: str = "An unknown error occurred."
    seconds: float = 0.0
    phase: Literal["before", "after"] = "after"

    def matches(self, kind: Kind, req: RecordedRequest) -> bool:
        return (
            self.kind == kind
            and req.path.startswith(self.path_prefix)
            and self.method in (None, req.method)
        )


class Faults:
    """The active rules; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []

    def add(self, rule: Rule) -> None:
        rule.method = rule.method and rule.method.upper()
        with self._lock:
            self._rules.append(rule)

    def take(self, kind: Kind, req: RecordedRequest) -> Rule | None:
        """The first rule of ``kind`` matching ``req``, counted as used."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(kind, req):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

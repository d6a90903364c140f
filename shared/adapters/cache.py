"""A small thread-safe LRU whose entries carry their own expiry instant."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

Value = TypeVar("Value")


class ExpiringLru(Generic[Value]):
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[Hashable, tuple[datetime, Value]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, now: datetime) -> Value | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            valid_until, value = entry
            if now >= valid_until:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Value, valid_until: datetime) -> None:
        with self._lock:
            self._entries[key] = (valid_until, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

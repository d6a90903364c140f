"""A task queue that records what is enqueued instead of sending it (stands in for
`shared.adapters.queue.CeleryQueue`; the code under test is unchanged)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.tasks import APPLY_STRIPE_EVENT, PROCESS_REFUND, SEND_NOTIFICATION


@dataclass
class RecordingQueue:
    sent: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    # False: behave like a broker that is down (CeleryQueue answers False, logs it).
    accepting: bool = True

    def enqueue(self, task_name: str, *args: str) -> bool:
        if not self.accepting:
            return False
        self.sent.append((task_name, args))
        return True

    def close(self) -> None:
        pass

    def args_of(self, task_name: str) -> list[str]:
        """The first argument of each message of one task, in order (tasks take ids)."""
        return [args[0] for name, args in self.sent if name == task_name]

    def notifications(self) -> list[str]:
        return self.args_of(SEND_NOTIFICATION)

    def refunds(self) -> list[str]:
        return self.args_of(PROCESS_REFUND)

    def events(self) -> list[str]:
        return self.args_of(APPLY_STRIPE_EVENT)

    def clear(self) -> None:
        self.sent.clear()

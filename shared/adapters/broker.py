"""The Celery broker transport: kombu's Redis transport, with one repair.

The defect (kombu 5.7.0, celery 5.7.0; reproduced in tests/integration/test_broker_transport.py
and, as a whole worker, in tests/e2e/test_broker_outage.py): Redis goes away while the
worker's task channel has a BRPOP in flight and a task running (unacknowledged, since tasks
are acknowledged late). If the connection error surfaces on another socket first (the
remote-control channel's LISTEN, a timer), Celery's consumer handles it by
`connection.collect()` then `connection.close()`:

1. `collect()` closes the channels. The task channel's `close()` first reads the reply of
   its BRPOP (kombu#1733: so that a message Redis already popped is not lost); on a dead
   socket that read raises ConnectionError, the channel stays open and its unacknowledged
   messages are not restored. `collect()` swallows the error and detaches the transport from
   the connection (`transport.client = None`).
2. `close()` closes the task channel again; now it gets as far as restoring the
   unacknowledged messages, which needs the connection's host:
   `AttributeError: 'NoneType' object has no attribute 'hostname'` in `restore_unacked`.
   Celery only ignores connection errors there: "Unrecoverable error", the worker exits
   (2 outages in 7 under load, 2 in 6 with one task running).

The repair: a BRPOP whose connection is already dead has no reply to read, so `close()`
goes on closing instead of stopping half-way. The restore then fails with a connection
error (Redis is down), which everything above ignores, and the messages come back through
the visibility timeout once Redis is back, as for a killed worker. Nothing is patched: the
transport is chosen by `broker_transport` (`celery_config`). When kombu closes a channel
whose BRPOP connection is dead on its own, the canary test in test_broker_transport.py
fails and this module can go.
"""

from __future__ import annotations

from queue import Empty

from kombu.transport import redis as kombu_redis

TRANSPORT = "shared.adapters.broker:Transport"


class Channel(kombu_redis.Channel):
    def close(self) -> None:
        if self._in_poll:
            try:
                self._brpop_read()  # type: ignore[no-untyped-call]  # kombu: untyped
            except Empty:
                pass
            except self.connection_errors:
                # The connection died with the BRPOP on it: nothing to drain. `_in_poll`
                # is cleared (by _brpop_read), so the close below finishes the job.
                pass
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel

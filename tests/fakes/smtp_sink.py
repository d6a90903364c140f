"""A real SMTP server on loopback that keeps what it receives (aiosmtpd, background thread).

The mail code under test talks real SMTP to it through ``smtplib``::

    with SmtpSink() as sink:
        backend = SmtpBackend(sink.url)          # "smtp://127.0.0.1:PORT"
        ...
        (message,) = sink.wait_for(1, timeout=5)
        assert message.to == "client@example.com" and message.html is not None

Each received message is parsed with ``email.policy.default`` into an ``EmailMessage`` and
kept as a ``ReceivedMessage`` (envelope, To/From/Subject/Message-ID, text and HTML parts) in
a thread-safe list. Failures can be injected: ``fail_next(n, code)`` answers the next ``n``
DATA commands with ``code`` (451 = transient, 550 = permanent), ``refuse_recipient(address)``
answers RCPT TO for that address with a 550, ``set_data_delay(seconds)`` slows DATA down (to
make concurrent senders overlap). ``credentials=("user", "secret")`` offers AUTH PLAIN/LOGIN
(without TLS: a loopback test server only).

Port 0 (the default) binds a free port chosen by the kernel; ``.url``/``.port`` give the real
one once started. Standalone: ``python -m tests.fakes.smtp_sink --port 2525`` prints
``smtp sink listening on smtp://127.0.0.1:2525`` and one line per received message, until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import FrameType, TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the sink received it."""

    envelope_from: str
    envelope_to: tuple[str, ...]
    message: EmailMessage
    raw: bytes

    @property
    def to(self) -> str:
        return str(self.message.get("To", ""))

    @property
    def sender(self) -> str:
        """The From header (``from`` is a keyword)."""
        return str(self.message.get("From", ""))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def message_id(self) -> str:
        return str(self.message.get("Message-ID", ""))

    @property
    def content_types(self) -> list[str]:
        """Content types of the leaf parts, e.g. ``["text/plain", "text/html"]``."""
        return [part.get_content_type() for part in self.message.walk() if not part.is_multipart()]

    @property
    def calendar_parts(self) -> list[EmailMessage]:
        """The text/calendar parts (an invitation: inline and as invite.ics), in order."""
        return [part for part in self.message.walk() if part.get_content_type() == "text/calendar"]

    def _body(self, subtype: str) -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_type() != f"text/{subtype}":
            return None
        content: str = part.get_content()
        return content

    @property
    def text(self) -> str | None:
        return self._body("plain")

    @property
    def html(self) -> str | None:
        return self._body("html")


class _Handler:
    """aiosmtpd handler hooks; all state lives in the sink (guarded by its condition)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self._sink._refusal_for(address)
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient refused by smtp sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        delay = self._sink._data_delay
        if delay > 0:
            await asyncio.sleep(delay)
        code = self._sink._take_failure()
        if code is not None:
            enhanced = "4.3.0" if code < 500 else "5.3.0"
            return f"{code} {enhanced} injected failure from smtp sink"
        raw = envelope.original_content
        if raw is None:
            content = envelope.content or b""
            raw = content if isinstance(content, bytes) else content.encode()
        # SMTP lines end in CRLF; parse with "\n" so that bodies read like the text sent.
        parsed = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        received = ReceivedMessage(
            envelope_from=envelope.mail_from or "",
            envelope_to=tuple(envelope.rcpt_tos),
            message=parsed,
            raw=raw,
        )
        self._sink._store(received)
        return "250 2.0.0 OK: queued by smtp sink"


class _Controller(Controller):
    """aiosmtpd's Controller, but port 0 works: once the listener is bound, ``port`` is set
    to the real port before the controller's own "trigger" connection (which would otherwise
    connect to port 0 and fail)."""

    def _trigger_server(self) -> None:
        server = self.server
        if self.port == 0 and isinstance(server, asyncio.Server) and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        super()._trigger_server()


class SmtpSink:
    """A loopback SMTP server that stores what it receives. See the module docstring."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = HOST,
        credentials: tuple[str, str] | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
    ) -> None:
        self._requested_port = port
        self.host = host
        self._credentials = credentials
        self._on_message = on_message
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._failures: deque[int] = deque()
        self._refused: dict[str, int] = {}
        self._data_delay = 0.0
        self._controller: _Controller | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("smtp sink already started")
        kwargs: dict[str, Any] = {}
        if self._credentials is not None:
            # AUTH over plain TCP is fine on loopback in tests; auth stays optional.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self._requested_port,
            server_hostname="smtp-sink.local",  # no reverse DNS look-up for the banner
            ready_timeout=10.0,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("smtp sink not started")
        return int(self._controller.port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # -- received messages -------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot (a copy) of the messages received so far, in arrival order."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; return them all. Raises
        ``TimeoutError`` (naming how many did arrive) when the deadline passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"smtp sink: expected {count} message(s), got {len(self._messages)}"
                    )
                self._cond.wait(remaining)
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages and pending injected failures/refusals/delay."""
        with self._cond:
            self._messages.clear()
            self._failures.clear()
            self._refused.clear()
            self._data_delay = 0.0

    # -- fault injection ---------------------------------------------------------------------

    def fail_next(self, n: int = 1, code: int = 451) -> None:
        """Answer the next ``n`` DATA commands with ``code`` (4xx transient, 5xx permanent)."""
        if not 400 <= code <= 599:
            raise ValueError("code must be a 4xx or 5xx SMTP reply code")
        with self._cond:
            self._failures.extend([code] * n)

    def refuse_recipient(self, address: str, code: int = 550) -> None:
        """Answer RCPT TO for ``address`` with ``code`` until ``clear()``."""
        with self._cond:
            self._refused[address.lower()] = code

    def set_data_delay(self, seconds: float) -> None:
        """Sleep this long before answering each DATA command (0 to stop)."""
        with self._cond:
            self._data_delay = max(0.0, seconds)

    # -- called from the server thread -------------------------------------------------------

    def _take_failure(self) -> int | None:
        with self._cond:
            return self._failures.popleft() if self._failures else None

    def _refusal_for(self, address: str) -> int | None:
        with self._cond:
            return self._refused.get(address.lower())

    def _store(self, message: ReceivedMessage) -> None:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        if self._on_message is not None:
            self._on_message(message)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = self._credentials
        if expected is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = (data.login.decode(), data.password.decode()) == expected
        return AuthResult(success=ok, handled=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback SMTP sink that prints what it gets.")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=2525)
    args = parser.parse_args(argv)

    def show(message: ReceivedMessage) -> None:
        print(
            f"received {message.message_id or '(no Message-ID)'} to {message.to!r}: "
            f"{message.subject!r} ({', '.join(message.content_types)})",
            flush=True,
        )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with SmtpSink(args.port, host=args.host, on_message=show) as sink:
        print(f"smtp sink listening on {sink.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The request body limit, for bodies with a Content-Length and chunked ones alike.

Flask refuses a body whose Content-Length is over MAX_CONTENT_LENGTH with 413. A chunked
body has no Content-Length: Werkzeug then reads it through a stream that stops at the
limit and, since gunicorn terminates the input itself (`wsgi.input_terminated`), cannot
tell "done" from "cut", so the handler got the first MiB and answered INVALID_SIGNATURE or
"not valid JSON". `BoundedBodies` reads such a body first, up to one byte past the limit,
and hands it on with the Content-Length of what it read: over the limit, Werkzeug's own
check answers 413 PAYLOAD_TOO_LARGE as for any other body, and a body within the limit
arrives whole.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes; a read may return fewer than asked before the end."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class BoundedBodies:
    """WSGI middleware: a chunked body is buffered (up to the limit plus one byte) and
    handed on with a Content-Length."""

    def __init__(self, app: WSGIApplication, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # The server has de-chunked it; to Werkzeug it is now a body of known length
            # (it ignores Content-Length while Transfer-Encoding says chunked).
            body = _read_at_most(environ["wsgi.input"], self.limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        return self.app(environ, start_response)

"""HTTP/1.1 load generator: standard library only, one process, one thread.

Run as a separate process so that it never shares the bench's interpreter:

    python -m tests.bench.loadgen SPEC.json [--out RESULT.json]   # result on stdout or file
    python -m tests.bench.loadgen --serve PORT [--close]   # a trivial server (ceiling)

Progress lines go to stderr. Requests are pre-encoded bytes; responses are parsed only
as far as the status line, `Content-Length` and `Connection` need. The fixed-duration
mode runs on a plain selector loop over non-blocking sockets (about a third of the CPU
per request of asyncio transports: it shares two cores with the server); the burst and
paced modes, which are not CPU-bound, use asyncio. A connection is kept alive unless the
server answers `Connection: close` (gunicorn's sync workers do: then each request opens
a new connection, and its latency includes the TCP connect, as a real client's would).

Spec (JSON object):
    mode         "duration" | "burst" | "paced"
    host, port   the server
    ports        optional: several servers on `host` (instances behind a balancer); the
                 connections (burst, paced: the requests) go to them in turn
    method, path, headers   the request line and common headers
    body         one body for every request, or
    bodies_file  a JSON list of {"body": str, "headers": {...}} used in order
    unique       with bodies_file: stop when the list runs out instead of wrapping
    label        name used in progress lines
    expect       status counted as a success (default 200)
    duration:    connections, warmup, duration (seconds)
    burst:       one request per body, each on its own connection, all opened first
                 and released together
    paced:       one request per body, `rate` per second, each on a fresh connection

Result (JSON): ok (successes in the measured window), rps (ok per second), latency_ms
(p50/p95/p99/max/mean over the measured window's requests), statuses, errors,
exhausted, samples (a few unexpected answers), cpu_seconds (this process), and per
request records in burst/paced modes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import resource
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

JSON = dict[str, Any]
PROGRESS_EVERY = 2.0
CONNECT_TIMEOUT = 10.0
RESPONSE_TIMEOUT = 30.0


class ProtocolError(Exception):
    """The server closed the connection or sent something that is not HTTP/1.1."""


def percentiles(values: Sequence[float]) -> JSON:
    """Nearest-rank percentiles of seconds, returned in milliseconds."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        index = max(0, min(n - 1, int(-(-p * n // 100)) - 1))
        return round(ordered[index] * 1000, 3)

    return {
        "p50": rank(50),
        "p95": rank(95),
        "p99": rank(99),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / n * 1000, 3),
        "n": n,
    }


def encode_request(
    method: str, host: str, port: int, path: str, headers: dict[str, str], body: str | None
) -> bytes:
    data = body.encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Response:
    __slots__ = ("body", "keep_alive", "status")

    def __init__(self, status: int, keep_alive: bool, body: bytes) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.body = body


class Client(asyncio.Protocol):
    """One HTTP/1.1 connection; `request()` sends one request and awaits its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self._head_end = -1
        self._length: int | None = None
        self._status = 0
        self._keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._parse(eof=False)

    def eof_received(self) -> bool:
        self._parse(eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._parse(eof=True)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ProtocolError(f"connection closed: {exc or 'EOF'}"))

    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self._head_end, self._length = -1, None
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def _parse(self, *, eof: bool) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buf = self.buf
        if self._head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if eof:
                    waiter.set_exception(ProtocolError("truncated response head"))
                return
            head = bytes(buf[:end]).lower()
            if not head.startswith(b"http/1."):
                waiter.set_exception(ProtocolError(f"not HTTP: {head[:40]!r}"))
                return
            self._status = int(head[9:12])
            self._keep = b"\r\nconnection: close" not in head
            found = head.find(b"\r\ncontent-length:")
            if found >= 0:
                stop = head.find(b"\r\n", found + 2)
                self._length = int(head[found + 17 : stop if stop >= 0 else len(head)])
            elif b"\r\ntransfer-encoding: chunked" in head:
                waiter.set_exception(ProtocolError("chunked responses are not supported"))
                return
            self._head_end = end + 4
        start = self._head_end
        if self._length is not None:
            if len(buf) - start < self._length:
                if eof:
                    waiter.set_exception(ProtocolError("truncated response body"))
                return
            body = bytes(buf[start : start + self._length])
            del buf[: start + self._length]
        else:  # no length: the body runs until the server closes
            if not eof:
                return
            body = bytes(buf[start:])
            buf.clear()
            self._keep = False
        self.waiter = None
        waiter.set_result(Response(self._status, self._keep, body))


class Requests:
    """The requests to send, pre-encoded, in order; wraps around unless `unique`."""

    def __init__(self, spec: JSON) -> None:
        host, port = spec["host"], int(spec["port"])
        method, path = spec.get("method", "GET"), spec["path"]
        common: dict[str, str] = dict(spec.get("headers") or {})
        if "bodies_file" in spec:
            with open(spec["bodies_file"]) as fh:
                items: list[JSON] = json.load(fh)
            self.items = [
                encode_request(
                    method,
                    host,
                    port,
                    path,
                    {**common, **(item.get("headers") or {})},
                    item.get("body"),
                )
                for item in items
            ]
        else:
            self.items = [encode_request(method, host, port, path, common, spec.get("body"))]
        self.unique = bool(spec.get("unique")) and "bodies_file" in spec
        self.next_index = 0
        self.exhausted = False

    def take(self) -> bytes | None:
        i = self.next_index
        if i >= len(self.items):
            if self.unique:
                self.exhausted = True
                return None
            i %= len(self.items)
        self.next_index += 1
        return self.items[i]


def _ports(spec: JSON) -> list[int]:
    return [int(p) for p in spec.get("ports") or [spec["port"]]]


def _log(label: str, text: str) -> None:
    print(f"{label}: {text}", file=sys.stderr, flush=True)


async def _open(host: str, port: int) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(Client, host, port), timeout=CONNECT_TIMEOUT
    )
    return client


class Tally:
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[JSON] = []
        self.completed = 0  # also outside the measured window (progress)

    def record(self, status: int, body: bytes, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[str(status)] += 1
        if status != self.expect and len(self.samples) < 5:
            self.samples.append({"status": status, "body": body[:300].decode(errors="replace")})

    @property
    def ok(self) -> int:
        return self.statuses.get(str(self.expect), 0)


class _Conn:
    """One connection of the duration engine: connecting → writing → reading."""

    __slots__ = ("body_end", "buf", "head_end", "keep", "length", "out", "sock", "status", "t0")

    def __init__(self, sock: socket.socket, t0: float) -> None:
        self.sock = sock
        self.t0 = t0
        self.out = b""
        self.buf = bytearray()
        self.head_end = -1
        self.length: int | None = None
        self.status = 0
        self.keep = True
        self.body_end = -1

    def parse(self, *, eof: bool) -> bool:
        """True once the whole response is in `buf`; raises ProtocolError."""
        buf = self.buf
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if eof:
                    raise ProtocolError("truncated response head")
                return False
            head = bytes(buf[:end]).lower()
            if not head.startswith(b"http/1."):
                raise ProtocolError(f"not HTTP: {head[:40]!r}")
            self.status = int(head[9:12])
            self.keep = b"\r\nconnection: close" not in head
            found = head.find(b"\r\ncontent-length:")
            if found >= 0:
                stop = head.find(b"\r\n", found + 2)
                self.length = int(head[found + 17 : stop if stop >= 0 else len(head)])
            elif b"\r\ntransfer-encoding: chunked" in head:
                raise ProtocolError("chunked responses are not supported")
            self.head_end = end + 4
        if self.length is not None:
            if len(buf) - self.head_end < self.length:
                if eof:
                    raise ProtocolError("truncated response body")
                return False
            self.body_end = self.head_end + self.length
            return True
        if eof:  # no length: the body runs until the server closes
            self.body_end = len(buf)
            self.keep = False
            return True
        return False

    def reset(self) -> None:
        del self.buf[: self.body_end]
        self.head_end, self.length, self.body_end = -1, None, -1


def run_duration(spec: JSON) -> JSON:
    """`connections` concurrent clients for warm-up + duration seconds, on a plain
    selector loop (no asyncio: a third of the CPU per request, which matters when the
    generator shares two cores with the server)."""
    host = spec["host"]
    ports = _ports(spec)
    opened = 0
    label = spec.get("label", "load")
    connections = int(spec.get("connections", 8))
    warmup, duration = float(spec.get("warmup", 2.0)), float(spec.get("duration", 8.0))
    requests = Requests(spec)
    tally = Tally(int(spec.get("expect", 200)))
    clock = time.perf_counter
    sel = selectors.DefaultSelector()
    began = clock()
    window_start, window_end = began + warmup, began + warmup + duration
    retry_at: list[float] = []  # when to open a replacement for a failed connection
    read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
    stopping = False

    def fail(conn: _Conn, exc: BaseException) -> None:
        if conn.t0 >= window_start:
            tally.errors[type(exc).__name__] += 1
        drop(conn)
        retry_at.append(clock() + 0.01)

    def drop(conn: _Conn) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()

    def open_connection() -> None:
        nonlocal opened
        data = requests.take()
        if data is None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock, clock())
        conn.out = data
        port = ports[opened % len(ports)]
        opened += 1
        code = sock.connect_ex((host, port))
        sel.register(sock, write, conn)
        if code not in (0, errno.EINPROGRESS):
            fail(conn, ConnectionRefusedError(code, os.strerror(code)))

    def send(conn: _Conn) -> None:
        sent = conn.sock.send(conn.out)
        conn.out = conn.out[sent:]
        sel.modify(conn.sock, write if conn.out else read, conn)

    def finished(conn: _Conn) -> None:
        t1 = clock()
        tally.completed += 1
        if conn.t0 >= window_start and t1 <= window_end:
            body = bytes(conn.buf[conn.head_end : conn.body_end])
            tally.record(conn.status, body, t1 - conn.t0)
        keep = conn.keep
        conn.reset()
        if stopping or t1 >= window_end:
            drop(conn)
            return
        if not keep:
            drop(conn)
            open_connection()
            return
        data = requests.take()
        if data is None:
            drop(conn)
            return
        conn.t0, conn.out = t1, data
        send(conn)

    _log(label, f"warm-up {warmup:.0f} s, then {duration:.0f} s, {connections} connections")
    for _ in range(connections):
        open_connection()
    next_progress = window_start + PROGRESS_EVERY
    while True:
        now = clock()
        if now >= window_end:
            break
        if retry_at and retry_at[0] <= now:
            retry_at.pop(0)
            open_connection()
        if now >= next_progress:
            seen, elapsed = len(tally.latencies), now - window_start
            _log(
                label,
                f"{elapsed:4.1f}/{duration:.0f} s  {seen:,} req  "
                f"{seen / max(elapsed, 1e-9):,.0f} req/s",
            )
            next_progress += PROGRESS_EVERY
        if not sel.get_map():
            if not retry_at:
                break  # every body used (unique) and answered
            time.sleep(max(0.0, retry_at[0] - now))
            continue
        for key, events in sel.select(timeout=0.05):
            conn: _Conn = key.data
            try:
                if events & write:
                    if conn.head_end < 0 and not conn.buf:
                        error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise ConnectionRefusedError(error, os.strerror(error))
                    send(conn)
                    continue
                data = conn.sock.recv(65536)
                conn.buf += data
                if conn.parse(eof=not data):
                    finished(conn)
                elif not data:
                    raise ProtocolError("connection closed")
            except (OSError, ProtocolError) as exc:
                fail(conn, exc)
    stopping = True
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    measured = min(clock(), window_end) - window_start
    return _summary(tally, max(measured, 1e-9), exhausted=requests.exhausted)


async def run_burst(spec: JSON) -> JSON:
    """All connections opened first, then every request written at once. Each client
    asks once and goes (`Connection: close`, closed on its answer), as distinct users
    do: a client that kept its connection open until the last answer would hold one of
    the server's keep-alive slots (gunicorn: worker_connections per process) for the
    keep-alive timeout, and the clients still queued in the listen backlog would wait
    for that instead of for the server's work (15 s for 2,000 once)."""
    host, ports = spec["host"], _ports(spec)
    label = spec.get("label", "burst")
    headers = {**(spec.get("headers") or {}), "Connection": "close"}
    requests = Requests({**spec, "headers": headers})
    n = len(requests.items)
    tally = Tally(int(spec.get("expect", 200)))
    _log(label, f"opening {n} connections")
    gate = asyncio.Semaphore(64)

    async def opened(i: int) -> Client:
        async with gate:
            return await _open(host, ports[i % len(ports)])

    clients = await asyncio.gather(*(opened(i) for i in range(n)))
    clock = time.perf_counter
    _log(label, f"{n} connections open: releasing {n} requests together")
    t0 = clock()
    futures = [client.send(requests.items[i]) for i, client in enumerate(clients)]
    records: list[JSON] = []

    async def answer(i: int, future: asyncio.Future[Response]) -> None:
        try:
            response = await asyncio.wait_for(future, RESPONSE_TIMEOUT)
        except (OSError, ProtocolError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            records.append({"i": i, "status": None, "error": type(exc).__name__})
            return
        latency = clock() - t0
        clients[i].close()
        tally.record(response.status, response.body, latency)
        records.append(
            {
                "i": i,
                "status": response.status,
                "latency_ms": round(latency * 1000, 3),
                "body": response.body[:400].decode(errors="replace"),
            }
        )

    await asyncio.gather(*(answer(i, f) for i, f in enumerate(futures)))
    all_answered = clock() - t0
    for client in clients:
        client.close()
    result = _summary(tally, all_answered, exhausted=False)
    result["all_answered_ms"] = round(all_answered * 1000, 3)
    result["records"] = sorted(records, key=lambda r: r["i"])
    return result


async def run_paced(spec: JSON) -> JSON:
    """One request per body at a steady `rate`, each on a fresh connection; records the
    wall-clock time each was sent (time.time(), comparable with other processes)."""
    host, ports = spec["host"], _ports(spec)
    label = spec.get("label", "paced")
    rate = float(spec.get("rate", 20.0))
    requests = Requests(spec)
    n = len(requests.items)
    tally = Tally(int(spec.get("expect", 200)))
    records: list[JSON] = []
    clock = time.perf_counter
    _log(label, f"{n} requests at {rate:g}/s")
    began = clock()

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, began + i / rate - clock()))
        t0 = clock()
        sent_at = time.time()
        try:
            client = await _open(host, ports[i % len(ports)])
            response = await asyncio.wait_for(client.send(requests.items[i]), RESPONSE_TIMEOUT)
            client.close()
        except (OSError, ProtocolError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            records.append({"i": i, "sent_at": sent_at, "status": None})
            return
        latency = clock() - t0
        tally.record(response.status, response.body, latency)
        records.append(
            {
                "i": i,
                "sent_at": sent_at,
                "status": response.status,
                "latency_ms": round(latency * 1000, 3),
            }
        )

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            _log(label, f"{len(records)}/{n} sent and answered")

    reporter = asyncio.create_task(progress())
    await asyncio.gather(*(one(i) for i in range(n)))
    reporter.cancel()
    result = _summary(tally, clock() - began, exhausted=False)
    result["records"] = sorted(records, key=lambda r: r["i"])
    return result


def _summary(tally: Tally, seconds: float, *, exhausted: bool) -> JSON:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ok": tally.ok,
        "requests": len(tally.latencies),
        "seconds": round(seconds, 4),
        "rps": round(tally.ok / seconds, 2),
        "latency_ms": percentiles(tally.latencies),
        "statuses": dict(tally.statuses),
        "errors": dict(tally.errors),
        "exhausted": exhausted,
        "samples": tally.samples,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "completed_total": tally.completed or len(tally.latencies),
    }


MODES: dict[str, Callable[[JSON], Any]] = {
    "burst": run_burst,
    "paced": run_paced,
}


# --- the trivial server the generator's ceiling is measured against ---------------


class TrivialServer(asyncio.Protocol):
    """Answers every request head with a fixed small JSON document (no body parsing:
    GET only). With `close`, closes after each answer like gunicorn's sync workers."""

    close_after = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            del self.buf[: end + 4]
            body = b'{"status":"ok"}\n'
            extra = b"Connection: close\r\n" if self.close_after else b""
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + extra
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
            if self.close_after:
                self.transport.close()
                return


async def serve(port: int, close: bool) -> None:
    TrivialServer.close_after = close
    loop = asyncio.get_running_loop()
    server = await loop.create_server(TrivialServer, "127.0.0.1", port, backlog=2048)
    print(f"trivial server listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", help="JSON spec file")
    parser.add_argument("--out", help="write the result here instead of stdout")
    parser.add_argument("--serve", type=int, metavar="PORT", help="run the trivial server")
    parser.add_argument("--close", action="store_true", help="trivial server: Connection: close")
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.close))
        return 0
    if not args.spec:
        parser.error("give a spec file or --serve PORT")
    with open(args.spec) as fh:
        spec: JSON = json.load(fh)
    mode = spec.get("mode", "duration")
    result = run_duration(spec) if mode == "duration" else asyncio.run(MODES[mode](spec))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh)
    else:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m devtools.stripe_emulator --port 12111``: the emulator as a process of its own.

    python -m devtools.stripe_emulator --port 12111 \\
        --webhook-url http://127.0.0.1:8000/api/webhooks/stripe --webhook-secret whsec_… \\
        [--connect-webhook-url URL --connect-webhook-secret whsec_…] \\
        --state var/stripe/state.json

Prints ``stripe emulator listening on http://HOST:PORT`` once it accepts connections, then
one line per webhook delivery attempt, and stops on SIGTERM or SIGINT (exit status 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devtools.stripe_emulator.delivery import Endpoint, RetryPolicy
from devtools.stripe_emulator.emulator import StripeEmulator

READY = "stripe emulator listening on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stripe_emulator",
        description="Stripe API emulator (see devtools/stripe_emulator/__init__.py)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    hooks = parser.add_argument_group("webhooks (what `stripe listen --forward-to` does)")
    hooks.add_argument("--webhook-url", help="deliver every event to this endpoint")
    hooks.add_argument(
        "--webhook-secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        help="signing secret of the endpoint (default: $STRIPE_WEBHOOK_SECRET)",
    )
    hooks.add_argument(
        "--webhook-events",
        default="*",
        help="comma-separated event types to deliver, patterns allowed (default: *)",
    )
    hooks.add_argument(
        "--connect-webhook-url",
        help="deliver events on connected accounts (account.updated, ...) to this Connect "
        "endpoint instead (default: the --webhook-url)",
    )
    hooks.add_argument(
        "--connect-webhook-secret",
        default=os.environ.get("STRIPE_CONNECT_WEBHOOK_SECRET", ""),
        help="signing secret of the Connect endpoint (default: $STRIPE_CONNECT_WEBHOOK_SECRET)",
    )
    default = RetryPolicy()
    hooks.add_argument(
        "--webhook-attempts",
        type=int,
        default=default.max_attempts,
        help=f"attempts before an event is given up (default {default.max_attempts})",
    )
    hooks.add_argument(
        "--webhook-backoff",
        type=float,
        default=default.first_delay,
        help=f"seconds before the first retry, doubled after each (default {default.first_delay})",
    )
    hooks.add_argument(
        "--webhook-backoff-max",
        type=float,
        default=default.max_delay,
        help=f"longest wait between two attempts, seconds (default {default.max_delay})",
    )
    parser.add_argument("--state", type=Path, help="keep the state in this JSON file")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="add this latency to every API call"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    endpoint = None
    if args.webhook_url:
        if not args.webhook_secret:
            print(
                "--webhook-url needs --webhook-secret (or STRIPE_WEBHOOK_SECRET)", file=sys.stderr
            )
            return 2
        types = tuple(t.strip() for t in args.webhook_events.split(",") if t.strip())
        endpoint = Endpoint(args.webhook_url, args.webhook_secret, types or ("*",))
    connect = None
    if args.connect_webhook_url:
        if not args.connect_webhook_secret:
            print(
                "--connect-webhook-url needs --connect-webhook-secret "
                "(or STRIPE_CONNECT_WEBHOOK_SECRET)",
                file=sys.stderr,
            )
            return 2
        connect = Endpoint(args.connect_webhook_url, args.connect_webhook_secret)
    retry = RetryPolicy(
        first_delay=args.webhook_backoff,
        max_delay=args.webhook_backoff_max,
        max_attempts=args.webhook_attempts,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("stripe_emulator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    emulator = StripeEmulator(
        args.host,
        args.port,
        verbose=args.verbose,
        webhook=endpoint,
        retry=retry,
        state_path=args.state,
        latency_ms=args.latency_ms,
        connect_webhook=connect,
    )
    with emulator:
        print(f"{READY} {emulator.url}", flush=True)
        if endpoint is not None:
            print(f"delivering webhook events to {endpoint.url}", flush=True)
        if connect is not None:
            print(f"delivering Connect events to {connect.url}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m devtools.stripe_emulator --port 12111``: the emulator as a process of its own.

Prints ``stripe emulator listening on http://HOST:PORT`` once it accepts connections and
stops on SIGTERM or SIGINT (exit status 0).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from devtools.stripe_emulator.emulator import StripeEmulator

READY = "stripe emulator listening on"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.stripe_emulator",
        description="Stripe API emulator (see devtools/stripe_emulator/__init__.py)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with StripeEmulator(args.host, args.port, verbose=args.verbose) as emulator:
        print(f"{READY} {emulator.url}", flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

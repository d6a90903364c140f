"""The project's Stripe emulator with TCP_NODELAY on its sockets (BENCH_STRIPE_NODELAY=1).

`tests/fakes/stripe_emulator.py` answers with two writes (head, then body) on a socket
with Nagle's algorithm on; on a keep-alive connection the body then waits for the
client's delayed ACK, about 40 ms on Linux, so every PaymentIntent call takes ~44 ms
instead of ~1 ms. With this switch the bench can show the application's own cost of
booking creation; the run's JSON records which emulator was used.
"""

from __future__ import annotations

from tests.fakes import stripe_emulator

stripe_emulator._RequestHandler.disable_nagle_algorithm = True

if __name__ == "__main__":
    raise SystemExit(stripe_emulator.main())

"""The `inkflow` command line: an edge of its own, like the API and the worker.

Operator commands (`seed`, `events list`, `events replay`) work on the database through
`shared`; development commands (`pay`, `trigger`, `demo`) talk to a running system over
HTTP only — the API, and the Stripe API at STRIPE_API_BASE (the emulator's control API
when it is the emulator) — so they need nothing of the API's or the worker's code.

Settings come from the environment, then `var/run.env` (what `make run` chose), then
`.env`: beside a running `make run`, nothing needs exporting.
"""

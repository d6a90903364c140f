"""Development tools: what `make run`, the tests and the bench use, never production.

`stack` (`make run`: the whole system on this machine), `embedded` (PostgreSQL and
Valkey from pip wheels), `processes` (start, watch and stop child processes),
`stripe_emulator` (Stripe's API over HTTP for the real SDK). Dev tools may import
`shared`; nothing in `shared` or `services` imports them (import-linter holds it), and
the production image does not contain them.
"""

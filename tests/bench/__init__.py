"""`make bench`: load and latency figures of the whole stack (`python -m tests.bench`).

Modules: `run` (stages, targets, the entry point), `stack` (database, Stripe emulator,
gunicorn, Celery worker, clean-up), `loadgen` (the separate load-generator process,
standard library only), `data` (seeding), `naive` (the per-slot reference for
availability), `ceilings` (raw PostgreSQL / Redis figures), `report` (table, JSON),
`cpu` (CPU seconds per component), `profiling` (optional py-spy summaries).

No module here is named test_*.py: pytest does not collect the bench.
"""

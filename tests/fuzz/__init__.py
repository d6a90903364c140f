"""Fuzzing the API with schemathesis against its own OpenAPI document, on data of its own:
`make fuzz` (random, longer, prints a summary) and tests/e2e/test_fuzz_e2e.py (a fixed seed
and a bounded budget, in `make test`)."""

"""`python -m tests.bench` (`make bench`): see tests/bench/run.py."""

import os
import sys

from tests.bench.run import main

status = main()
try:
    sys.stdout.flush()
except BrokenPipeError:  # stdout was a pipe closed early (`| head`): exit quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
raise SystemExit(status)

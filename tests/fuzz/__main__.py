"""`python -m tests.fuzz` (`make fuzz`): a fuzz run, random unless --seed, with a summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests import support
from tests.fuzz.run import FuzzOptions, fuzz


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="reproduce a run (default: random)")
    parser.add_argument("--max-examples", type=int, default=100, help="per operation and phase")
    parser.add_argument("--max-time", type=int, default=None, help="seconds; repeats until spent")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--workers", type=int, default=1, help="schemathesis workers")
    parser.add_argument("--out", type=Path, default=None, help="where the run's files go")
    args = parser.parse_args(argv)
    out = args.out or support.ROOT / "var" / "fuzz" / time.strftime("%Y%m%d-%H%M%S")
    options = FuzzOptions(
        seed=args.seed,
        max_examples=args.max_examples,
        max_time=args.max_time,
        phases=args.phases,
        workers=args.workers,
    )
    report = fuzz(options, out)
    print(report.summary())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

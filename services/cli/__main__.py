"""`python -m services.cli …` (the `inkflow` script)."""

import sys

from services.cli.main import main

sys.exit(main())

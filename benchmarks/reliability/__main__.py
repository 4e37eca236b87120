"""`python -m benchmarks.reliability`."""

import sys

from benchmarks.reliability.bench import main

sys.exit(main())

"""`python -m engines.bench`: see engines/bench/run.py."""

import sys

from engines.bench.run import main

sys.exit(main())

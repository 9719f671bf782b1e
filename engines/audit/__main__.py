"""`python -m engines.audit`: see engines/audit/run.py."""

import sys

from engines.audit.run import main

sys.exit(main())

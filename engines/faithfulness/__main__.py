"""`python -m engines.faithfulness`: see engines/faithfulness/run.py."""

import sys

from engines.faithfulness.run import main

sys.exit(main())

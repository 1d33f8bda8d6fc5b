"""``python -m plantsync`` is the ``plantsync`` command."""

import sys

from plantsync.tools.cli import main

sys.exit(main())

"""``python -m plantsync`` is the ``plantsync`` command."""

import sys

from plantsync.agent.cli import main

sys.exit(main())

"""`python -m thingledger_bridge`: the same as `thingledger-bridge`."""

import sys

from .cli import main

sys.exit(main())

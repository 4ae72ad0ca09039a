"""python -m thingledger_device: the device CLI (thingledger-device)."""

import sys

from .cli import main

sys.exit(main())

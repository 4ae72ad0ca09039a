"""thingledger device client: the Raspberry Pi side of thingledger (keys, signing, pickup, actuator)."""

__version__ = "0.1.0"

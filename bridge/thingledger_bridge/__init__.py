"""thingledger bridging node: validators sign CrossChainRelay messages they checked on the source chain, and
a relayer delivers them to the destination chain exactly once."""

__version__ = "0.1.0"

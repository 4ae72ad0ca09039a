"""Fixtures of the bridge tests: local anvil chains with chosen chain ids and relays deployed on them
(helpers: bridge_helpers.py).

Everything is session scoped: the chains start once and the shared relay stack is deployed once. Tests that
change a relay's settings (pause, validators, rate limit, trusted remotes) build their own stack with
`bridge_helpers.build_relay_stack` instead of touching the shared one; tests on the shared stack use their
own recipients or compare counts before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from bridge_helpers import CHAIN_A_ID, CHAIN_B_ID, CHAIN_C_ID, RelayStack, build_relay_stack
from thingledger_bridge.devnet import LocalChain, start_anvil


class ChainPair(NamedTuple):
    """The two chains most tests bridge between: `a` (chain 1001) and `b` (chain 1002)."""

    a: LocalChain
    b: LocalChain


@pytest.fixture(scope="session")
def chains() -> Iterator[ChainPair]:
    """Two anvil chains (ids 1001 and 1002, a block per transaction), stopped at the end of the session."""
    started: list[LocalChain] = []
    try:
        started.append(start_anvil(CHAIN_A_ID))
        started.append(start_anvil(CHAIN_B_ID))
        yield ChainPair(*started)
    finally:
        for chain in started:
            chain.stop()


@pytest.fixture(scope="session")
def third_chain() -> Iterator[LocalChain]:
    """A third anvil chain (id 1003), started only for the tests that ask for it."""
    chain = start_anvil(CHAIN_C_ID)
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="session")
def relay_stack(chains: ChainPair) -> RelayStack:
    """A CrossChainRelay on each chain trusting the other's (generous rate limit), validators
    `relay_stack.validators` (three fixed keys, sorted by address) with threshold 2, and a
    RelayRecipientMock on each chain trusting the other chain's test sender. Shared by the whole session:
    do not change its settings."""
    return build_relay_stack(chains.a, chains.b)

"""Fixtures of the DeviceRegistry, SalesOrder and ServiceMarket `ape test` suites (helpers:
contract_helpers.py, market_helpers.py).

Deployments are session scoped: ape's isolation takes a chain snapshot around every test and
reverts it afterwards, so every test starts from the same freshly deployed contracts without
paying for a deployment per test.
"""

from __future__ import annotations

import pytest

from contract_helpers import DAY, MANUFACTURER_ROLE, RELEASE, Kit
from market_helpers import SUPPLIER_POOL, MarketKit


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def manufacturer(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def other_manufacturer(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def owner(accounts):
    """A device owner (receives devices from the manufacturer)."""
    return accounts[3]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def seller(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def buyer(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def gate_owner(accounts):
    """Owner of the warehouse gate device (the warehouse operator)."""
    return accounts[7]


@pytest.fixture(scope="session")
def chain_id(chain):
    return chain.chain_id


@pytest.fixture(scope="session")
def registry(project, admin, manufacturer, other_manufacturer):
    registry = admin.deploy(project.DeviceRegistry, admin)
    registry.grantRole(MANUFACTURER_ROLE, manufacturer, sender=admin)
    registry.grantRole(MANUFACTURER_ROLE, other_manufacturer, sender=admin)
    return registry


@pytest.fixture(scope="session")
def registry2(project, admin, manufacturer):
    """A second registry on the same chain (for cross-registry replay)."""
    registry = admin.deploy(project.DeviceRegistry, admin)
    registry.grantRole(MANUFACTURER_ROLE, manufacturer, sender=admin)
    return registry


@pytest.fixture(scope="session")
def sales(project, admin, registry):
    return admin.deploy(project.SalesOrder, registry, admin)


@pytest.fixture(scope="session")
def kit(chain, registry, sales, manufacturer, chain_id):
    return Kit(chain, registry, sales, manufacturer, chain_id)


@pytest.fixture(scope="session")
def gate(kit, registry, gate_owner, seller):
    """An Active warehouse gate owned by ``gate_owner`` that admitted ``seller`` with RELEASE."""
    device = kit.new_device(owner=gate_owner)
    registry.grantPermissions(device.id, seller, RELEASE, kit.now() + 365 * DAY, sender=gate_owner)
    return device


@pytest.fixture(scope="session")
def supplier(accounts):
    """Owner of the ServiceMarket supplier devices."""
    return accounts[8]


@pytest.fixture(scope="session")
def fee_recipient(accounts):
    """Receives ServiceMarket's protocol fee when the tests configure one."""
    return accounts[9]


@pytest.fixture(scope="session")
def market(project, admin, registry):
    return admin.deploy(project.ServiceMarket, registry, admin)


@pytest.fixture(scope="session")
def market2(project, admin, registry):
    """A second ServiceMarket on the same registry (for cross-deployment replay)."""
    return admin.deploy(project.ServiceMarket, registry, admin)


@pytest.fixture(scope="session")
def mkit(kit, market):
    return MarketKit(kit, market)


@pytest.fixture(scope="session")
def suppliers(kit, supplier):
    """SUPPLIER_POOL Active supplier devices owned by ``supplier``.  A device lists at most one offer per
    service type, so the tests that fill a market (beyond MAX_HINT_STEPS or MAX_MATCH_STEPS offers) need
    that many devices; provisioning them once here is much cheaper than in every such test."""
    return tuple(kit.new_device(owner=supplier) for _ in range(SUPPLIER_POOL))


@pytest.fixture(scope="session")
def _deployments(registry, registry2, sales, gate, market, market2, mkit, suppliers):
    """Every session-scoped deployment at once.  The contract test modules request it for every
    test (``pytestmark``), so that no later test introduces a session fixture mid-run, which would
    force ape to re-base its snapshots.  Not autouse: tests elsewhere under tests/ need none of it."""

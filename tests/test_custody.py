"""The custody history of a device can be rebuilt from events alone (the registry's indexed ERC-721
Transfer events), through a manufacturer, an owner, SalesOrder's escrow and a buyer."""

import pytest

from contract_helpers import ZERO_ADDRESS

pytestmark = pytest.mark.usefixtures("_deployments")


def custody_history(registry, device_id, start_block):
    """Every holder change of `device_id`, oldest first, read from Transfer logs filtered by token id."""
    logs = registry.Transfer.range(start_block, registry.chain_manager.blocks.height + 1, search_topics={"tokenId": device_id})
    return [(log.event_arguments["from"], log.event_arguments["to"]) for log in logs]


def test_custody_history_is_rebuilt_from_transfer_events(kit, registry, sales, gate, manufacturer, seller, buyer, stranger):
    start = registry.chain_manager.blocks.height
    device, order_id = kit.device_order(seller, buyer)  # provisioned, sold to the seller, listed, bought
    deadline, gate_signature = kit.release_signature(gate, order_id, buyer.address)
    sales.release(order_id, gate.id, deadline, gate_signature, kit.buyer_consent(order_id, gate.id), sender=stranger)
    registry.transferFrom(buyer, stranger, device.id, sender=buyer)

    assert custody_history(registry, device.id, start) == [
        (ZERO_ADDRESS, manufacturer.address),  # provisioned (minted to the manufacturer)
        (manufacturer.address, seller.address),  # first owner
        (seller.address, sales.address),  # listed: held in escrow
        (sales.address, buyer.address),  # released at the gate
        (buyer.address, stranger.address),  # resold
    ]
    # The history ends where ownerOf says the device is now, and names no other device's transfers.
    assert custody_history(registry, device.id, start)[-1][1] == registry.ownerOf(device.id)
    assert custody_history(registry, device.id + 1, start) == []

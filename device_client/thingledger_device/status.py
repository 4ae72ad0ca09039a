"""A device's registry entry as the `status` command shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import Chain


def read_status(chain: Chain, device_address: str) -> dict[str, Any]:
    """Device id, lifecycle state, next nonce, owner and warranty of the device holding `device_address`;
    a key that was never provisioned has device id 0 and state "None"."""
    device_id = chain.device_id_of_key(device_address)
    status: dict[str, Any] = {
        "address": device_address,
        "chainId": chain.deployment.chain_id,
        "registry": chain.deployment.registry.address,
        "deviceId": device_id,
        "state": "None",
        "nonce": 0,
        "owner": None,
        "warrantyEnd": 0,
        "warrantyActive": False,
    }
    if device_id == 0:
        return status
    device = chain.device(device_id)
    status.update(
        state=device.state,
        nonce=device.nonce,
        owner=chain.owner_of(device_id),
        warrantyEnd=device.warranty_end,
        warrantyActive=chain.warranty_active(device_id),
    )
    return status

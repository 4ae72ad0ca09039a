"""The deployment file the deploy script writes: which chain, and where DeviceRegistry, SalesOrder and
ServiceMarket live.

{"chainId": 31337, "network": "ethereum:local", "deployer": "0x...",
 "contracts": {"DeviceRegistry": {"address": "0x...", "block": 1},
               "SalesOrder": {"address": "0x...", "block": 2},
               "ServiceMarket": {"address": "0x...", "block": 3}}}

ServiceMarket is optional: files written before the market existed lack it, and only the market commands
need it (they fail with `require_service_market`'s one-line error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DeviceClientError
from .values import json_uint, parse_address, parse_json, read_text_file, show_value


@dataclass(frozen=True)
class ContractLocation:
    """A deployed contract: its address and the block it was deployed in."""

    address: str
    block: int


@dataclass(frozen=True)
class Deployment:
    """A thingledger deployment on one chain."""

    chain_id: int
    network: str
    deployer: str
    registry: ContractLocation
    sales_order: ContractLocation
    service_market: ContractLocation | None = None

    def require_service_market(self) -> ContractLocation:
        """Where ServiceMarket lives; an error naming the missing contract for older deployment files."""
        if self.service_market is None:
            raise DeviceClientError(
                f"the deployment file for chain {self.chain_id} has no ServiceMarket contract "
                "(written before the market existed): redeploy with the current deploy script"
            )
        return self.service_market


def load_deployment(path: str | Path | None) -> Deployment:
    """Reads and checks a deployment file."""
    if path is None or str(path) == "":
        raise DeviceClientError("no deployment file: pass --deployment PATH or set THINGLEDGER_DEPLOYMENT")
    return parse_deployment(read_text_file(path, "deployment file"), source=str(path))


def parse_deployment(text: str, source: str = "deployment") -> Deployment:
    """Parses the JSON text of a deployment file."""
    document = parse_json(text, source)
    if not isinstance(document, dict):
        raise DeviceClientError(f"{source}: expected a JSON object")
    chain_id = json_uint(_field(document, "chainId", source), f"{source}: chainId")
    if chain_id == 0:
        raise DeviceClientError(f"{source}: chainId must be positive")
    network = _field(document, "network", source)
    if not isinstance(network, str):
        raise DeviceClientError(f"{source}: network must be a string, got {show_value(network)}")
    deployer = parse_address(_field(document, "deployer", source), f"{source}: deployer")
    contracts = _field(document, "contracts", source)
    if not isinstance(contracts, dict):
        raise DeviceClientError(f"{source}: contracts must be an object")
    return Deployment(
        chain_id=chain_id,
        network=network,
        deployer=deployer,
        registry=_location(contracts, "DeviceRegistry", source),
        sales_order=_location(contracts, "SalesOrder", source),
        service_market=_location(contracts, "ServiceMarket", source) if "ServiceMarket" in contracts else None,
    )


def _field(document: dict[str, Any], name: str, source: str) -> Any:
    if name not in document:
        raise DeviceClientError(f"{source}: missing field {name!r}")
    return document[name]


def _location(contracts: dict[str, Any], name: str, source: str) -> ContractLocation:
    if name not in contracts:
        raise DeviceClientError(f"{source}: contracts has no {name}")
    entry = contracts[name]
    if not isinstance(entry, dict):
        raise DeviceClientError(f"{source}: contracts.{name} must be an object")
    address = parse_address(
        _field(entry, "address", f"{source}: contracts.{name}"), f"{source}: contracts.{name}.address"
    )
    block = json_uint(_field(entry, "block", f"{source}: contracts.{name}"), f"{source}: contracts.{name}.block")
    return ContractLocation(address=address, block=block)

"""Deploy DeviceRegistry, SalesOrder and ServiceMarket, set up roles, and write deployments/<chainId>.json.

    ape run deploy --network ethereum:local:foundry
    ape run deploy --network iotex:testnet:node --account deployer --manufacturer 0xMaker...

The deployment file is what the device client reads (addresses and chain id).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from ape import project
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option
from ape.exceptions import ApeException

DEPLOYMENTS_FOLDER = Path(__file__).resolve().parent.parent / "deployments"


def write_deployment(deployment: dict[str, Any], folder: Path = DEPLOYMENTS_FOLDER) -> Path:
    """Write a deployment record to <folder>/<chainId>.json and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{deployment['chainId']}.json"
    path.write_text(json.dumps(deployment, indent=2) + "\n")
    return path


def deploy_contracts(
    deployer: AccountAPI, admin: str, manufacturers: tuple[str, ...] = (), **tx_args: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deploy every contract with `admin` as its admin; grant MANUFACTURER_ROLE to `manufacturers`.

    Role grants need the admin's signature, so they are made only when the deployer is the admin.
    Returns the contracts by name (DeviceRegistry, SalesOrder, ServiceMarket) and the deployment
    record: chain id, network, deployer, and each contract's address and deployment block.
    """
    if manufacturers and admin != deployer.address:
        raise click.UsageError("--manufacturer needs the deployer to be the admin; grant the role from the admin later")
    registry = deployer.deploy(project.DeviceRegistry, admin, **tx_args)
    contracts = {
        "DeviceRegistry": registry,
        "SalesOrder": deployer.deploy(project.SalesOrder, registry.address, admin, **tx_args),
        "ServiceMarket": deployer.deploy(project.ServiceMarket, registry.address, admin, **tx_args),
    }
    role = registry.MANUFACTURER_ROLE()
    for manufacturer in manufacturers:
        registry.grantRole(role, manufacturer, sender=deployer, **tx_args)

    provider = deployer.provider
    deployment = {
        "chainId": provider.chain_id,
        "network": provider.network.choice,
        "deployer": deployer.address,
        "contracts": {
            name: {"address": contract.address, "block": contract.creation_metadata.block}
            for name, contract in contracts.items()
        },
    }
    return contracts, deployment


@click.command(cls=ConnectedProviderCommand)
@account_option()
@click.option("--admin", help="Admin of every contract (default: the deploying account).")
@click.option("--manufacturer", "manufacturers", multiple=True, help="Grant MANUFACTURER_ROLE (repeatable).")
@click.option("--out", "out_folder", type=click.Path(file_okay=False, path_type=Path), default=DEPLOYMENTS_FOLDER)
def cli(account: AccountAPI, admin: str | None, manufacturers: tuple[str, ...], out_folder: Path) -> None:
    """Deploy thingledger's contracts to the chosen network and write its deployment file."""
    try:
        _, deployment = deploy_contracts(account, admin or account.address, manufacturers)
    except ApeException as error:
        raise click.ClickException(str(error).splitlines()[0]) from None
    path = write_deployment(deployment, out_folder)
    for name, contract in deployment["contracts"].items():
        click.echo(f"{name}: {contract['address']} (block {contract['block']})")
    click.echo(f"wrote {path}")

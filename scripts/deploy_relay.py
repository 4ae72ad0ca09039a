"""Deploy CrossChainRelay (and, on request, DeviceMirror and DeviceMirrorPublisher) and record them in
deployments/<chainId>.json, next to what `ape run deploy` wrote there (existing keys are kept).

    ape run deploy_relay --network iotex:testnet:node --account deployer \\
        --validator 0xVal1... --validator 0xVal2... --validator 0xVal3... --threshold 2 \\
        [--guardian 0xGuardian...] [--mirror] [--publisher [--publish-interval SECONDS]]

The deploying account owns what it deploys: it sets the relay's remotes, the mirror's trusted publishers and
the publisher's mirrors (`ape run connect_relay`). `--mirror` deploys the admission list of a chain that
receives devices (chain B); `--publisher` deploys the sender of a chain whose DeviceRegistry is recorded in
its deployment file (chain A), publishing each device at most once per `--publish-interval` (a decommissioning
always goes at once), and allows it to send through the new relay. Bad input is refused before any
transaction, with a one-line error.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option
from ape.exceptions import ApeException
from eth_utils import is_address, to_checksum_address

DEPLOYMENTS_FOLDER = Path(__file__).resolve().parent.parent / "deployments"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MAX_VALIDATORS = 32  # CrossChainRelay.MAX_VALIDATORS
DEFAULT_PUBLISH_INTERVAL = 3600  # seconds between two publications of one device to one chain
MAX_PUBLISH_INTERVAL = 365 * 24 * 3600


class BadInput(click.ClickException):
    """Refused input: one line on stderr, exit status 2 (as a usage error), no transaction sent."""

    exit_code = 2


# ---------------------------------------------------------------------------------------------- input


def parse_address(value: str, what: str, *, allow_zero: bool = False) -> str:
    """`value` as a checksummed address, or BadInput naming `what` (an option such as --guardian)."""
    if not isinstance(value, str) or not is_address(value):
        raise BadInput(f"{what}: {value!r} is not an address (0x followed by 40 hex digits)")
    address = to_checksum_address(value)
    if address == ZERO_ADDRESS and not allow_zero:
        raise BadInput(f"{what}: the zero address is not allowed")
    return address


def parse_validator_set(validators: Sequence[str], threshold: int) -> list[str]:
    """The validators as checksummed addresses, checked as CrossChainRelay checks them: 1 to 32 distinct
    non-zero addresses and a threshold that is a majority of them."""
    if not validators:
        raise BadInput("give at least one --validator")
    if len(validators) > MAX_VALIDATORS:
        raise BadInput(f"{len(validators)} validators given; a relay takes at most {MAX_VALIDATORS}")
    addresses: list[str] = []
    for value in validators:
        address = parse_address(value, "--validator")
        if address in addresses:
            raise BadInput(f"--validator {address} is given twice")
        addresses.append(address)
    count = len(addresses)
    lowest = count // 2 + 1
    if not lowest <= threshold <= count:
        raise BadInput(
            f"--threshold {threshold} is not a majority of {count} validator{'s' if count > 1 else ''} "
            f"(allowed: {lowest} to {count})"
        )
    return addresses


# ---------------------------------------------------------------------------------------------- deployment file


def deployment_path(chain_id: int, folder: Path = DEPLOYMENTS_FOLDER) -> Path:
    return Path(folder) / f"{chain_id}.json"


def read_deployment(chain_id: int, folder: Path = DEPLOYMENTS_FOLDER) -> dict[str, Any]:
    """The deployment record of chain `chain_id` in `folder`, or an empty one when there is none."""
    path = deployment_path(chain_id, folder)
    if not path.exists():
        return {"chainId": chain_id, "contracts": {}}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise click.ClickException(f"{path} is not a readable deployment file: {error}") from None
    if not isinstance(record, dict) or not isinstance(record.get("contracts", {}), dict):
        raise click.ClickException(f"{path} is not a deployment file (no contracts object)")
    if record.get("chainId", chain_id) != chain_id:
        raise click.ClickException(f"{path} records chain {record.get('chainId')}, not {chain_id}")
    record.setdefault("contracts", {})
    return record


def recorded_address(record: dict[str, Any], name: str, chain_id: int, folder: Path, needed_by: str) -> str:
    """The address of contract `name` in a deployment record, or a one-line error saying what needs it."""
    entry = record["contracts"].get(name)
    if not isinstance(entry, dict) or not is_address(entry.get("address", "")):
        raise click.ClickException(f"{needed_by} needs {name} in {deployment_path(chain_id, folder)}; it is not there")
    return to_checksum_address(entry["address"])


def require_code(provider: Any, address: str, name: str, chain_id: int) -> str:
    """`address`, or a one-line error when no contract is there (a deployment file of another chain run)."""
    if not provider.get_code(address):
        raise click.ClickException(f"no contract at {name} {address} recorded for chain {chain_id}")
    return address


def write_deployment_file(record: dict[str, Any], folder: Path = DEPLOYMENTS_FOLDER) -> Path:
    """Writes `record` to <folder>/<chainId>.json atomically (a temporary file renamed over it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = deployment_path(record["chainId"], folder)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(json.dumps(record, indent=2) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def merge_deployment(
    chain_id: int, contracts: dict[str, dict[str, Any]], folder: Path = DEPLOYMENTS_FOLDER, **top_level: Any
) -> Path:
    """Adds (or replaces) `contracts` entries in chain `chain_id`'s deployment file, keeping every other key;
    `top_level` keys are set only where the file has none."""
    record = read_deployment(chain_id, folder)
    for key, value in top_level.items():
        record.setdefault(key, value)
    record["contracts"].update(contracts)
    contracts_last = {**{k: v for k, v in record.items() if k != "contracts"}, "contracts": record["contracts"]}
    return write_deployment_file(contracts_last, folder)


# ---------------------------------------------------------------------------------------------- deployment


def deploy_relay(
    deployer: AccountAPI,
    validators: Sequence[str],
    threshold: int,
    guardian: str | None = None,
    *,
    mirror: bool = False,
    publisher: bool = False,
    publish_interval: int = DEFAULT_PUBLISH_INTERVAL,
    folder: Path = DEPLOYMENTS_FOLDER,
    **tx_args: Any,
) -> tuple[dict[str, Any], Path]:
    """Deploys CrossChainRelay owned by `deployer` with `validators`, `threshold` and `guardian` (none: zero),
    and on request DeviceMirror (`mirror`) and DeviceMirrorPublisher (`publisher`, against the DeviceRegistry
    of this chain's deployment file in `folder`, with `publish_interval` seconds between two publications of
    a device, and allowed to send through the relay). Merges them into that file and returns the contracts by
    name and the file's path. Input is checked before any transaction."""
    from ape import project

    addresses = parse_validator_set(validators, threshold)
    if not 0 <= publish_interval <= MAX_PUBLISH_INTERVAL:
        raise BadInput(f"--publish-interval {publish_interval} is out of range (0 to {MAX_PUBLISH_INTERVAL:,} seconds)")
    guardian_address = parse_address(guardian, "--guardian", allow_zero=True) if guardian else ZERO_ADDRESS
    provider = deployer.provider
    chain_id = provider.chain_id
    registry = None
    if publisher:
        record = read_deployment(chain_id, folder)
        registry = recorded_address(record, "DeviceRegistry", chain_id, folder, "--publisher")
        require_code(provider, registry, "DeviceRegistry", chain_id)

    relay = deployer.deploy(project.CrossChainRelay, deployer.address, guardian_address, addresses, threshold,
                            **tx_args)
    contracts: dict[str, Any] = {"CrossChainRelay": relay}
    entries: dict[str, dict[str, Any]] = {
        "CrossChainRelay": {
            **_location(relay),
            "owner": deployer.address,
            "guardian": guardian_address,
            "validators": addresses,
            "threshold": threshold,
        }
    }
    if mirror:
        contracts["DeviceMirror"] = deployer.deploy(project.DeviceMirror, relay.address, deployer.address, **tx_args)
        entries["DeviceMirror"] = {**_location(contracts["DeviceMirror"]), "relay": relay.address}
    if publisher:
        contracts["DeviceMirrorPublisher"] = deployer.deploy(
            project.DeviceMirrorPublisher, registry, relay.address, deployer.address, publish_interval, **tx_args
        )
        relay.setSenderAllowed(contracts["DeviceMirrorPublisher"].address, True, sender=deployer, **tx_args)
        entries["CrossChainRelay"]["allowedSenders"] = [contracts["DeviceMirrorPublisher"].address]
        entries["DeviceMirrorPublisher"] = {
            **_location(contracts["DeviceMirrorPublisher"]),
            "registry": registry,
            "relay": relay.address,
            "publishInterval": publish_interval,
        }
    path = merge_deployment(chain_id, entries, folder, network=provider.network.choice, deployer=deployer.address)
    return contracts, path


def _location(contract: Any) -> dict[str, Any]:
    return {"address": contract.address, "block": contract.creation_metadata.block}


@click.command(cls=ConnectedProviderCommand)
@account_option()
@click.option("--validator", "validators", multiple=True, metavar="0x..", help="A validator's address (repeat).")
@click.option("--threshold", type=int, required=True, help="Signatures a delivery needs: a majority of the validators.")
@click.option("--guardian", metavar="0x..", help="Who may pause the relay (default: nobody but the owner).")
@click.option("--mirror", is_flag=True, help="Also deploy DeviceMirror (the admission list of a receiving chain).")
@click.option("--publisher", is_flag=True,
              help="Also deploy DeviceMirrorPublisher for the DeviceRegistry in this chain's deployment file.")
@click.option("--publish-interval", type=int, default=DEFAULT_PUBLISH_INTERVAL, show_default=True, metavar="SECONDS",
              help="With --publisher: the least time between two publications of one device to one chain.")
@click.option("--out", "out_folder", type=click.Path(file_okay=False, path_type=Path), default=DEPLOYMENTS_FOLDER,
              show_default=True, help="Folder of the deployment files.")
def cli(
    account: AccountAPI,
    validators: tuple[str, ...],
    threshold: int,
    guardian: str | None,
    mirror: bool,
    publisher: bool,
    publish_interval: int,
    out_folder: Path,
) -> None:
    """Deploy CrossChainRelay (with --mirror / --publisher, DeviceMirror / DeviceMirrorPublisher) and merge
    it into deployments/<chainId>.json."""
    try:
        contracts, path = deploy_relay(account, validators, threshold, guardian, mirror=mirror, publisher=publisher,
                                       publish_interval=publish_interval, folder=out_folder)
    except ApeException as error:
        raise click.ClickException(" ".join(str(error).split()) or type(error).__name__) from None
    for name, contract in contracts.items():
        click.echo(f"{name}: {contract.address} (block {contract.creation_metadata.block})")
    click.echo(f"merged into {path}")

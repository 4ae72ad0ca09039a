"""Connect this chain's CrossChainRelay to another chain's, and the device mirror's ends to each other.

    ape run connect_relay --network iotex:testnet:node --account deployer \\
        --remote-chain-id 1002 --remote-relay 0xRelayOnB... --capacity 100 --refill-per-hour 600 \\
        [--trust-publisher 0xPublisherOnB...] [--mirror-to 0xMirrorOnB...] [--allow-sender 0xYourApp...]

Run it on both chains, each time naming the other one:
- always: the relay trusts `--remote-relay` as the relay of chain `--remote-chain-id` (messages both ways) and
  delivers at most `--capacity` of its messages in a burst, `--refill-per-hour` more per hour (`setRemote`);
- `--trust-publisher` (on the receiving chain B): this chain's DeviceMirror accepts snapshots from that
  DeviceMirrorPublisher of the remote chain;
- `--mirror-to` (on the sending chain A): this chain's DeviceMirrorPublisher sends snapshots to that
  DeviceMirror of the remote chain;
- `--allow-sender` (repeatable): this chain's relay lets that contract send messages (`setSenderAllowed`); every
  sender of a chain shares its rate limit on the other side, so only allowed senders may send. `deploy_relay
  --publisher` already allows the publisher it deploys.
This chain's contracts are read from deployments/<chainId>.json (`ape run deploy_relay`), where the settings
are recorded too. The account must own them. Bad input is refused before any transaction, with one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option
from ape.exceptions import ApeException

# Scripts are loaded by file, so the module beside this one comes through sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_relay import (  # noqa: E402
    DEPLOYMENTS_FOLDER,
    BadInput,
    parse_address,
    read_deployment,
    recorded_address,
    require_code,
    write_deployment_file,
)

MAX_UINT32 = 2**32 - 1
MAX_UINT64 = 2**64 - 1


def connect_relay(
    account: AccountAPI,
    remote_chain_id: int,
    remote_relay: str,
    capacity: int,
    refill_per_hour: int,
    *,
    trust_publisher: str | None = None,
    mirror_to: str | None = None,
    allow_senders: tuple[str, ...] = (),
    folder: Path = DEPLOYMENTS_FOLDER,
    **tx_args: Any,
) -> list[tuple[str, Any]]:
    """Sets the remote on this chain's relay and, when given, trusts a remote publisher on this chain's mirror
    and points this chain's publisher at a remote mirror. Checks everything (input, the deployment file,
    ownership) before the first transaction. Records the settings in the deployment file. Returns
    (what was done, receipt) pairs."""
    from ape import project

    chain_id = account.provider.chain_id
    if not 1 <= remote_chain_id <= MAX_UINT64:
        raise BadInput(f"--remote-chain-id {remote_chain_id} is not a chain id (1 to 2**64-1)")
    if remote_chain_id == chain_id:
        raise BadInput(f"--remote-chain-id {remote_chain_id} is this chain; name the other chain")
    relay_address = parse_address(remote_relay, "--remote-relay")
    for option, value in (("--capacity", capacity), ("--refill-per-hour", refill_per_hour)):
        if not 1 <= value <= MAX_UINT32:
            raise BadInput(f"{option} {value} is out of range (1 to {MAX_UINT32:,} messages)")
    publisher_address = parse_address(trust_publisher, "--trust-publisher") if trust_publisher else None
    mirror_address = parse_address(mirror_to, "--mirror-to") if mirror_to else None
    sender_addresses = [parse_address(sender, "--allow-sender") for sender in allow_senders]

    record = read_deployment(chain_id, folder)

    def recorded(name: str, needed_by: str) -> Any:
        address = recorded_address(record, name, chain_id, folder, needed_by)
        return getattr(project, name).at(require_code(account.provider, address, name, chain_id))

    relay = recorded("CrossChainRelay", "connect_relay")
    mirror = recorded("DeviceMirror", "--trust-publisher") if publisher_address else None
    publisher = recorded("DeviceMirrorPublisher", "--mirror-to") if mirror_address else None
    for name, contract in (("CrossChainRelay", relay), ("DeviceMirror", mirror), ("DeviceMirrorPublisher", publisher)):
        if contract is not None and contract.owner() != account.address:
            raise click.ClickException(
                f"{account.address} does not own {name} {contract.address} (its owner is {contract.owner()})")

    done: list[tuple[str, Any]] = []
    entries = record["contracts"]

    def record_step(action: str, receipt: Any) -> None:
        done.append((action, receipt))
        write_deployment_file(record, folder)  # after every transaction, so a later failure loses nothing

    receipt = relay.setRemote(remote_chain_id, relay_address, capacity, refill_per_hour, sender=account, **tx_args)
    entries["CrossChainRelay"].setdefault("remotes", {})[str(remote_chain_id)] = {
        "relay": relay_address, "capacity": capacity, "refillPerHour": refill_per_hour}
    record_step(f"CrossChainRelay trusts {relay_address} as chain {remote_chain_id}'s relay "
                f"({capacity} messages burst, {refill_per_hour}/hour)", receipt)
    for sender in sender_addresses:
        receipt = relay.setSenderAllowed(sender, True, sender=account, **tx_args)
        allowed = entries["CrossChainRelay"].setdefault("allowedSenders", [])
        entries["CrossChainRelay"]["allowedSenders"] = sorted(set(allowed) | {sender})
        record_step(f"CrossChainRelay lets {sender} send messages", receipt)
    if mirror is not None:
        receipt = mirror.setTrustedPublisher(remote_chain_id, publisher_address, True, sender=account, **tx_args)
        trusted = entries["DeviceMirror"].setdefault("trustedPublishers", {})
        trusted[str(remote_chain_id)] = sorted(set(trusted.get(str(remote_chain_id), [])) | {publisher_address})
        record_step(f"DeviceMirror accepts snapshots from publisher {publisher_address} on chain {remote_chain_id}",
                    receipt)
    if publisher is not None:
        receipt = publisher.setMirror(remote_chain_id, mirror_address, sender=account, **tx_args)
        entries["DeviceMirrorPublisher"].setdefault("mirrors", {})[str(remote_chain_id)] = mirror_address
        record_step(f"DeviceMirrorPublisher sends chain {remote_chain_id}'s snapshots to mirror {mirror_address}",
                    receipt)
    return done


@click.command(cls=ConnectedProviderCommand)
@account_option()
@click.option("--remote-chain-id", type=int, required=True, help="The other chain's id.")
@click.option("--remote-relay", required=True, metavar="0x..", help="The CrossChainRelay on the other chain.")
@click.option("--capacity", type=int, required=True, help="Messages from that chain delivered in a burst at most.")
@click.option("--refill-per-hour", type=int, required=True, help="Messages added back to that burst per hour.")
@click.option("--trust-publisher", metavar="0x..", help="This chain's DeviceMirror accepts that remote publisher.")
@click.option("--mirror-to", metavar="0x..", help="This chain's DeviceMirrorPublisher sends to that remote mirror.")
@click.option("--allow-sender", "allow_senders", multiple=True, metavar="0x..",
              help="A contract of this chain that may send messages through the relay (repeatable).")
@click.option("--out", "out_folder", type=click.Path(file_okay=False, path_type=Path), default=DEPLOYMENTS_FOLDER,
              show_default=True, help="Folder of the deployment files.")
def cli(
    account: AccountAPI,
    remote_chain_id: int,
    remote_relay: str,
    capacity: int,
    refill_per_hour: int,
    trust_publisher: str | None,
    mirror_to: str | None,
    allow_senders: tuple[str, ...],
    out_folder: Path,
) -> None:
    """Connect this chain's relay (and device mirror ends) to another chain's."""
    try:
        done = connect_relay(account, remote_chain_id, remote_relay, capacity, refill_per_hour,
                             trust_publisher=trust_publisher, mirror_to=mirror_to,
                             allow_senders=allow_senders, folder=out_folder)
    except ApeException as error:
        raise click.ClickException(" ".join(str(error).split()) or type(error).__name__) from None
    for action, receipt in done:
        click.echo(f"{action} (tx {receipt.txn_hash})")
    click.echo(f"recorded in {out_folder / f'{account.provider.chain_id}.json'}")

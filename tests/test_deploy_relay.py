"""scripts/deploy_relay.py and scripts/connect_relay.py, through their Python functions on Ape's local network:
what they deploy and configure, what they record in the deployment file (keeping what was there), and the
one-line refusals of bad input, none of which sends a transaction."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from connect_relay import connect_relay  # noqa: E402
from deploy_relay import BadInput, deploy_relay  # noqa: E402

pytestmark = pytest.mark.usefixtures("_deployments")

ZERO = "0x0000000000000000000000000000000000000000"
REMOTE_CHAIN = 1002
VALIDATORS = sorted(Account.from_key(bytes([i]) * 32).address for i in range(1, 8))
ACTIVE = 2


def deployment_file(folder: Path, chain_id: int) -> dict:
    return json.loads((folder / f"{chain_id}.json").read_text())


def seed_deployment(folder: Path, chain_id: int, registry) -> dict:
    """A deployment file as `ape run deploy` leaves it (plus a key of the operator's own)."""
    record = {
        "chainId": chain_id,
        "network": "ethereum:local",
        "deployer": "0x" + "11" * 20,
        "operatorNote": "kept",
        "contracts": {"DeviceRegistry": {"address": registry.address, "block": 1},
                      "SalesOrder": {"address": "0x" + "22" * 20, "block": 2}},
    }
    (folder / f"{chain_id}.json").write_text(json.dumps(record))
    return record


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "deployments"


@pytest.fixture
def seeded(folder, chain_id, registry):
    folder.mkdir()
    return seed_deployment(folder, chain_id, registry)


# ---------------------------------------------------------------------------------------------- deploy_relay


def test_deploy_relay_sets_validators_guardian_owner_and_keeps_existing_keys(admin, stranger, folder, seeded,
                                                                             chain_id):
    contracts, path = deploy_relay(admin, VALIDATORS[:3], 2, stranger.address, folder=folder)

    relay = contracts["CrossChainRelay"]
    assert set(contracts) == {"CrossChainRelay"}
    assert relay.validatorSet() == (VALIDATORS[:3], 2, 1)
    assert relay.guardian() == stranger.address
    assert relay.owner() == admin.address
    assert path == folder / f"{chain_id}.json"
    record = deployment_file(folder, chain_id)
    # What was there stays: top-level keys (the earlier deployer too) and the other contracts.
    assert {k: v for k, v in record.items() if k != "contracts"} == {k: v for k, v in seeded.items() if k != "contracts"}
    assert record["contracts"]["DeviceRegistry"] == seeded["contracts"]["DeviceRegistry"]
    assert record["contracts"]["SalesOrder"] == seeded["contracts"]["SalesOrder"]
    assert record["contracts"]["CrossChainRelay"] == {
        "address": relay.address,
        "block": relay.creation_metadata.block,
        "owner": admin.address,
        "guardian": stranger.address,
        "validators": VALIDATORS[:3],
        "threshold": 2,
    }


def test_deploy_relay_without_guardian_or_file_creates_the_file(admin, folder, chain_id):
    contracts, _ = deploy_relay(admin, VALIDATORS[:1], 1, folder=folder)

    relay = contracts["CrossChainRelay"]
    assert relay.guardian() == ZERO
    assert relay.validatorSet() == (VALIDATORS[:1], 1, 1)
    record = deployment_file(folder, chain_id)
    assert record["chainId"] == chain_id
    assert record["deployer"] == admin.address
    assert record["network"].startswith("ethereum:local")
    assert list(record["contracts"]) == ["CrossChainRelay"]


def test_deploy_relay_with_mirror_and_publisher(admin, folder, seeded, chain_id, registry):
    contracts, _ = deploy_relay(admin, VALIDATORS[:7], 5, mirror=True, publisher=True, publish_interval=600,
                                folder=folder)

    relay, mirror, publisher = (contracts[n] for n in ("CrossChainRelay", "DeviceMirror", "DeviceMirrorPublisher"))
    assert relay.validatorSet() == (VALIDATORS[:7], 5, 1)
    assert relay.isSenderAllowed(publisher.address)
    assert not relay.isSenderAllowed(mirror.address)
    assert publisher.publishInterval() == 600
    assert mirror.relay() == relay.address
    assert mirror.owner() == admin.address
    assert publisher.registry() == registry.address
    assert publisher.relay() == relay.address
    assert publisher.owner() == admin.address
    entries = deployment_file(folder, chain_id)["contracts"]
    assert entries["CrossChainRelay"]["allowedSenders"] == [publisher.address]
    assert entries["DeviceMirror"] == {"address": mirror.address, "block": mirror.creation_metadata.block,
                                       "relay": relay.address}
    assert entries["DeviceMirrorPublisher"] == {"address": publisher.address,
                                                "block": publisher.creation_metadata.block,
                                                "registry": registry.address, "relay": relay.address,
                                                "publishInterval": 600}


def test_publisher_needs_the_registry_in_the_deployment_file(admin, folder, chain_id):
    nonce = admin.nonce
    with pytest.raises(click.ClickException) as refused:
        deploy_relay(admin, VALIDATORS[:1], 1, publisher=True, folder=folder)
    assert refused.value.message == (
        f"--publisher needs DeviceRegistry in {folder / f'{chain_id}.json'}; it is not there"
    )
    assert admin.nonce == nonce
    assert not (folder / f"{chain_id}.json").exists()


def test_publisher_refuses_a_recorded_registry_without_code(admin, folder, chain_id):
    folder.mkdir()
    empty = "0x" + "33" * 20
    (folder / f"{chain_id}.json").write_text(json.dumps(
        {"chainId": chain_id, "contracts": {"DeviceRegistry": {"address": empty, "block": 1}}}))
    nonce = admin.nonce
    with pytest.raises(click.ClickException) as refused:
        deploy_relay(admin, VALIDATORS[:1], 1, publisher=True, folder=folder)
    assert refused.value.message == (
        f"no contract at DeviceRegistry 0x{'33' * 20} recorded for chain {chain_id}"
    )
    assert admin.nonce == nonce


@pytest.mark.parametrize(
    ("validators", "threshold", "message"),
    [
        ((), 1, "give at least one --validator"),
        (VALIDATORS[:3], 1, "--threshold 1 is not a majority of 3 validators (allowed: 2 to 3)"),
        (VALIDATORS[:3], 4, "--threshold 4 is not a majority of 3 validators (allowed: 2 to 3)"),
        (VALIDATORS[:4], 2, "--threshold 2 is not a majority of 4 validators (allowed: 3 to 4)"),
        (VALIDATORS[:1], 0, "--threshold 0 is not a majority of 1 validator (allowed: 1 to 1)"),
        ((VALIDATORS[0], VALIDATORS[0].lower()), 2, f"--validator {VALIDATORS[0]} is given twice"),
        (("0x1234",), 1, "--validator: '0x1234' is not an address (0x followed by 40 hex digits)"),
        ((ZERO,), 1, "--validator: the zero address is not allowed"),
        (tuple(f"0x{i:040x}" for i in range(1, 34)), 17, "33 validators given; a relay takes at most 32"),
    ],
)
def test_bad_validator_sets_are_refused_in_one_line_before_any_transaction(admin, folder, validators, threshold,
                                                                           message):
    nonce = admin.nonce
    with pytest.raises(BadInput) as refused:
        deploy_relay(admin, validators, threshold, folder=folder)
    assert refused.value.message == message
    assert "\n" not in refused.value.message
    assert refused.value.exit_code == 2
    assert admin.nonce == nonce
    assert not folder.exists()


def test_bad_guardian_is_refused(admin, folder):
    nonce = admin.nonce
    with pytest.raises(BadInput) as refused:
        deploy_relay(admin, VALIDATORS[:1], 1, "guardian", folder=folder)
    assert refused.value.message == "--guardian: 'guardian' is not an address (0x followed by 40 hex digits)"
    assert admin.nonce == nonce


@pytest.mark.parametrize("interval", [-1, 365 * 24 * 3600 + 1])
def test_bad_publish_interval_is_refused(admin, folder, seeded, interval):
    nonce = admin.nonce
    with pytest.raises(BadInput) as refused:
        deploy_relay(admin, VALIDATORS[:1], 1, publisher=True, publish_interval=interval, folder=folder)
    assert refused.value.message == f"--publish-interval {interval} is out of range (0 to 31,536,000 seconds)"
    assert admin.nonce == nonce


def test_a_corrupt_deployment_file_is_refused(admin, folder, chain_id):
    folder.mkdir()
    (folder / f"{chain_id}.json").write_text("{not json")
    with pytest.raises(click.ClickException) as refused:
        deploy_relay(admin, VALIDATORS[:1], 1, publisher=True, folder=folder)
    assert refused.value.message.startswith(f"{folder / f'{chain_id}.json'} is not a readable deployment file: ")
    assert (folder / f"{chain_id}.json").read_text() == "{not json"


# ---------------------------------------------------------------------------------------------- connect_relay


@pytest.fixture
def both_ends(admin, folder, seeded):
    """Relay, mirror and publisher of this chain, recorded in the deployment file."""
    contracts, _ = deploy_relay(admin, VALIDATORS[:3], 2, mirror=True, publisher=True, folder=folder)
    return contracts


def test_connect_relay_sets_the_remote_trusts_the_publisher_and_points_the_publisher(
    admin, owner, folder, chain_id, both_ends, kit, registry
):
    relay, mirror, publisher = (both_ends[n] for n in ("CrossChainRelay", "DeviceMirror", "DeviceMirrorPublisher"))
    remote_relay, remote_publisher, remote_mirror = ("0x" + c * 40 for c in "abc")

    done = connect_relay(admin, REMOTE_CHAIN, remote_relay, 10, 60, trust_publisher=remote_publisher,
                         mirror_to=remote_mirror, folder=folder)

    assert len(done) == 3 and all(not receipt.failed for _, receipt in done)
    assert relay.remote(REMOTE_CHAIN).relay.lower() == remote_relay
    assert (relay.remote(REMOTE_CHAIN).capacity, relay.remote(REMOTE_CHAIN).refillPerHour) == (10, 60)
    assert relay.rateLimitTokens(REMOTE_CHAIN).available == 10
    assert mirror.isTrustedSender(REMOTE_CHAIN, remote_publisher)
    assert publisher.mirrorOf(REMOTE_CHAIN).lower() == remote_mirror

    entries = deployment_file(folder, chain_id)["contracts"]
    assert entries["CrossChainRelay"]["remotes"] == {
        str(REMOTE_CHAIN): {"relay": to_checksum_address(remote_relay), "capacity": 10, "refillPerHour": 60}}
    assert entries["DeviceMirror"]["trustedPublishers"] == {str(REMOTE_CHAIN): [to_checksum_address(remote_publisher)]}
    assert entries["DeviceMirrorPublisher"]["mirrors"] == {str(REMOTE_CHAIN): to_checksum_address(remote_mirror)}

    # The wiring works: publishing an Active device sends a snapshot to the remote mirror through the relay.
    device = kit.new_device(owner=owner)
    receipt = publisher.publish(device.id, REMOTE_CHAIN, sender=owner)
    (sent,) = receipt.decode_logs(relay.MessageSent)
    # Ape decodes the Message struct of an event as a list, in field order.
    _, _, src_chain, src_relay, sender, dst_chain, dst_relay, recipient, gas_limit, payload = sent.message
    assert (src_chain, to_checksum_address(src_relay), to_checksum_address(sender)) == (
        chain_id, relay.address, publisher.address)
    assert (dst_chain, dst_relay.lower(), recipient.lower()) == (REMOTE_CHAIN, remote_relay, remote_mirror)
    assert gas_limit == publisher.MIRROR_GAS_LIMIT()
    device_id, device_owner, key, state, _ = abi_decode(["uint256", "address", "address", "uint8", "uint64"],
                                                        bytes(payload))
    assert (device_id, device_owner, key, state) == (device.id, owner.address.lower(), device.key.address.lower(),
                                                     ACTIVE)


def test_connect_relay_without_mirror_options_sets_only_the_remote(admin, folder, chain_id, both_ends):
    relay, mirror, publisher = (both_ends[n] for n in ("CrossChainRelay", "DeviceMirror", "DeviceMirrorPublisher"))
    remote_relay = "0x" + "ab" * 20

    done = connect_relay(admin, REMOTE_CHAIN, remote_relay, 5, 5, folder=folder)

    assert len(done) == 1
    assert relay.remote(REMOTE_CHAIN).relay.lower() == remote_relay
    assert publisher.mirrorOf(REMOTE_CHAIN) == ZERO
    entries = deployment_file(folder, chain_id)["contracts"]
    assert "trustedPublishers" not in entries["DeviceMirror"]
    assert "mirrors" not in entries["DeviceMirrorPublisher"]


def test_connect_relay_allows_senders_and_records_them(admin, stranger, folder, chain_id, both_ends):
    relay = both_ends["CrossChainRelay"]
    app = "0x" + "cd" * 20
    assert not relay.isSenderAllowed(app)

    done = connect_relay(admin, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, allow_senders=(app, stranger.address),
                         folder=folder)

    assert len(done) == 3
    assert relay.isSenderAllowed(app) and relay.isSenderAllowed(stranger.address)
    allowed = deployment_file(folder, chain_id)["contracts"]["CrossChainRelay"]["allowedSenders"]
    assert {address.lower() for address in allowed} >= {app, stranger.address.lower()}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"remote_chain_id": 0}, "--remote-chain-id 0 is not a chain id (1 to 2**64-1)"),
        ({"remote_chain_id": 2**64}, f"--remote-chain-id {2**64} is not a chain id (1 to 2**64-1)"),
        ({"remote_relay": "relay"}, "--remote-relay: 'relay' is not an address (0x followed by 40 hex digits)"),
        ({"remote_relay": ZERO}, "--remote-relay: the zero address is not allowed"),
        ({"capacity": 0}, "--capacity 0 is out of range (1 to 4,294,967,295 messages)"),
        ({"refill_per_hour": 2**32}, f"--refill-per-hour {2**32} is out of range (1 to 4,294,967,295 messages)"),
        ({"trust_publisher": "0x12"}, "--trust-publisher: '0x12' is not an address (0x followed by 40 hex digits)"),
        ({"mirror_to": ZERO}, "--mirror-to: the zero address is not allowed"),
        ({"allow_senders": ("0x" + "cd" * 20, "nope")},
         "--allow-sender: 'nope' is not an address (0x followed by 40 hex digits)"),
    ],
)
def test_bad_connect_input_is_refused_in_one_line_before_any_transaction(admin, folder, both_ends, changes, message):
    arguments = {"remote_chain_id": REMOTE_CHAIN, "remote_relay": "0x" + "ab" * 20, "capacity": 5,
                 "refill_per_hour": 5, **changes}
    nonce = admin.nonce
    with pytest.raises(BadInput) as refused:
        connect_relay(admin, arguments.pop("remote_chain_id"), arguments.pop("remote_relay"),
                      arguments.pop("capacity"), arguments.pop("refill_per_hour"), folder=folder, **arguments)
    assert refused.value.message == message
    assert refused.value.exit_code == 2
    assert admin.nonce == nonce
    assert both_ends["CrossChainRelay"].remote(REMOTE_CHAIN).relay == ZERO


def test_connect_relay_refuses_this_chain_as_the_remote(admin, folder, chain_id, both_ends):
    with pytest.raises(BadInput) as refused:
        connect_relay(admin, chain_id, "0x" + "ab" * 20, 5, 5, folder=folder)
    assert refused.value.message == f"--remote-chain-id {chain_id} is this chain; name the other chain"


def test_connect_relay_needs_the_contracts_in_the_deployment_file(admin, folder, chain_id, seeded):
    path = folder / f"{chain_id}.json"
    with pytest.raises(click.ClickException) as refused:
        connect_relay(admin, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, folder=folder)
    assert refused.value.message == f"connect_relay needs CrossChainRelay in {path}; it is not there"

    deploy_relay(admin, VALIDATORS[:1], 1, folder=folder)  # a relay, but no mirror and no publisher
    nonce = admin.nonce
    with pytest.raises(click.ClickException) as refused:
        connect_relay(admin, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, trust_publisher="0x" + "cd" * 20, folder=folder)
    assert refused.value.message == f"--trust-publisher needs DeviceMirror in {path}; it is not there"
    with pytest.raises(click.ClickException) as refused:
        connect_relay(admin, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, mirror_to="0x" + "cd" * 20, folder=folder)
    assert refused.value.message == f"--mirror-to needs DeviceMirrorPublisher in {path}; it is not there"
    assert admin.nonce == nonce


def test_connect_relay_refuses_an_account_that_does_not_own_the_contracts(admin, stranger, folder, both_ends):
    relay = both_ends["CrossChainRelay"]
    nonce = stranger.nonce
    with pytest.raises(click.ClickException) as refused:
        connect_relay(stranger, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, folder=folder)
    assert refused.value.message == (
        f"{stranger.address} does not own CrossChainRelay {relay.address} (its owner is {admin.address})"
    )
    assert stranger.nonce == nonce
    assert relay.remote(REMOTE_CHAIN).relay == ZERO


def test_connect_relay_refuses_a_recorded_relay_without_code(admin, folder, chain_id):
    folder.mkdir()
    empty = "0x" + "44" * 20
    (folder / f"{chain_id}.json").write_text(json.dumps(
        {"chainId": chain_id, "contracts": {"CrossChainRelay": {"address": empty, "block": 1}}}))
    with pytest.raises(click.ClickException) as refused:
        connect_relay(admin, REMOTE_CHAIN, "0x" + "ab" * 20, 5, 5, folder=folder)
    assert refused.value.message == f"no contract at CrossChainRelay 0x{'44' * 20} recorded for chain {chain_id}"

"""End to end: the market commands of thingledger-device on anvil (run by `ape test`).

Ape deploys DeviceRegistry, SalesOrder and ServiceMarket and provisions two supplier devices owned by two
owners. Then the CLI runs as subprocesses, as on the devices: the suppliers publish offers with signed
actions (one pays its own gas, the other's relayer pays), a demander device posts requests whose policies
pick different offers, a supplier reprices and declines, an attester device (a sensor) signs completion,
the demander confirms another, an owner withdraws the credit, and `offers --watch` follows it all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from client_helpers import PASSWORD, assert_refused, client_env, json_output, run_client, write_deployment
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from thingledger_device.typed_data import provision_message, record_tuple

GWEI = 10**9
SCRYPT_N = 2**14
SERVICE = "hvac-repair"
SERVICE_ID = "0x" + keccak(SERVICE.encode()).hex()
OTHER_SERVICE = keccak(b"window-cleaning")
ZERO_ADDRESS = "0x" + "00" * 20


@dataclass
class MarketWorld:
    """The deployed market and the keystores of everyone who uses the CLI."""

    rpc: str
    market: Any
    registry: Any
    deployment: Path
    old_deployment: Path
    password_file: Path
    keystores: dict[str, Path]
    devices: dict[str, LocalAccount]
    device_ids: dict[str, int]
    owners: dict[str, Any]
    admin: Any
    tmp: Path

    def args(self, command: str, *extra: str, key: str | None = None) -> list[str]:
        """A CLI command run with `key`'s keystore as --keystore (the device key)."""
        keystore = ["--keystore", str(self.keystores[key]), "--password-file", str(self.password_file)] if key else []
        return [command, *extra, "--deployment", str(self.deployment), "--rpc", self.rpc, *keystore, "--json"]

    def run(self, command: str, *extra: str, key: str | None = None) -> dict[str, Any]:
        """Runs a command that must succeed; its JSON result."""
        process = run_client(*self.args(command, *extra, key=key))
        assert process.returncode == 0, f"{command}: {process.stderr}"
        return json_output(process)

    def gas(self, name: str) -> list[str]:
        return ["--gas-keystore", str(self.keystores[name]), "--gas-password-file", str(self.password_file)]

    def acting(self, name: str) -> list[str]:
        return ["--from-keystore", str(self.keystores[name]), "--from-password-file", str(self.password_file)]


def write_keystore(path: Path, private_key: Any) -> Path:
    path.write_text(json.dumps(Account.encrypt(private_key, PASSWORD, kdf="scrypt", iterations=SCRYPT_N)))
    return path


def provision(registry: Any, chain: Any, device: LocalAccount, manufacturer: Any, owner: Any, serial: str) -> int:
    """Provisions `device` with its own signature, hands it to `owner`, who activates it."""
    now = chain.pending_timestamp
    record = {
        "model": "ServiceBot",
        "serial": serial,
        "firmwareHash": b"\xab" * 32,
        "manufacturedAt": now - 86_400,
        "warrantyEnd": now + 365 * 86_400,
        "metadataURI": f"ipfs://{serial}",
    }
    deadline = now + 3_600
    message = provision_message(
        chain.chain_id, registry.address, device.address, manufacturer.address, record, deadline
    )
    signature = device.sign_typed_data(full_message=message).signature
    registry.provision(device.address, record_tuple(record), deadline, signature, sender=manufacturer)
    device_id = int(device.address, 16)
    registry.transferFrom(manufacturer, owner, device_id, sender=manufacturer)
    registry.activate(device_id, sender=owner)
    return device_id


@pytest.fixture(scope="module")
def market_world(tmp_path_factory: pytest.TempPathFactory, accounts: Any, project: Any, chain: Any) -> MarketWorld:
    tmp = tmp_path_factory.mktemp("market")
    admin, manufacturer, owner_a, owner_b, relayer = (accounts[i] for i in range(5))
    password_file = tmp / "password.txt"
    password_file.write_text(PASSWORD + "\n")

    registry = project.DeviceRegistry.deploy(admin, sender=admin)
    sales_order = project.SalesOrder.deploy(registry, admin, sender=admin)
    market = project.ServiceMarket.deploy(registry, admin, sender=admin)
    registry.grantRole(registry.MANUFACTURER_ROLE(), manufacturer, sender=admin)
    common = {"chain_id": chain.chain_id, "registry": registry.address, "sales_order": sales_order.address}
    deployment = write_deployment(
        tmp / "deployment.json", **common, deployer=admin.address, service_market=market.address
    )
    old_deployment = write_deployment(tmp / "old-deployment.json", **common, deployer=admin.address)

    devices = {name: Account.create() for name in ("supplier_a", "supplier_b", "demander", "sensor")}
    device_ids = {
        "supplier_a": provision(registry, chain, devices["supplier_a"], manufacturer, owner_a, "SB-A"),
        "supplier_b": provision(registry, chain, devices["supplier_b"], manufacturer, owner_b, "SB-B"),
    }
    admin.transfer(devices["supplier_a"].address, 10**17)  # supplier A pays its own gas; B's relayer pays
    admin.transfer(devices["demander"].address, 10**18)  # the demander pays deposits and gas
    keystores = {name: write_keystore(tmp / f"{name}.json", account.key) for name, account in devices.items()}
    keystores["relayer"] = write_keystore(tmp / "relayer.json", relayer.private_key)
    keystores["owner_b"] = write_keystore(tmp / "owner-b.json", owner_b.private_key)
    return MarketWorld(
        rpc=chain.provider.http_uri,
        market=market,
        registry=registry,
        deployment=deployment,
        old_deployment=old_deployment,
        password_file=password_file,
        keystores=keystores,
        devices=devices,
        device_ids=device_ids,
        owners={"supplier_a": owner_a, "supplier_b": owner_b},
        admin=admin,
        tmp=tmp,
    )


def start_watch(world: MarketWorld, max_events: int) -> tuple[subprocess.Popen[str], int]:
    """`offers --watch` in the background; returns once it printed its listing (it watches from the next block
    on), with the listing's block."""
    watcher = subprocess.Popen(
        [sys.executable, "-m", "thingledger_device",
         *world.args("offers", "--service-type", SERVICE, "--watch", "--max-events", str(max_events),
                     "--timeout", "100", "--poll", "0.2")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env(),
    )  # fmt: skip
    assert watcher.stdout is not None
    listing = json.loads(watcher.stdout.readline())
    assert listing["serviceType"] == SERVICE_ID and listing["serviceName"] == SERVICE
    assert listing["offers"] == [] and listing["listed"] == 0
    return watcher, int(listing["blockNumber"])


def offer_order(world: MarketWorld, order: str) -> list[int]:
    listing = world.run("offers", "--service-type", SERVICE_ID, "--order", order)
    assert all(offer["alive"] and offer["health"] == "alive" for offer in listing["offers"])
    return [offer["offerId"] for offer in listing["offers"]]


def test_market_story(market_world: MarketWorld, chain: Any) -> None:
    world = market_world
    market = world.market
    watcher, listing_block = start_watch(world, max_events=13)
    try:
        # Two supplier devices publish by signed actions: A pays its own gas, B's relayer pays.
        a = world.run(
            "publish-offer", "--service-type", SERVICE, "--unit-price", str(2 * GWEI), "--units", "5",
            "--valid-for", "3600", "--metadata-uri", "ipfs://offer-a", key="supplier_a",
        )  # fmt: skip
        assert a["offerId"] == 1 and a["serviceType"] == SERVICE_ID and a["serviceName"] == SERVICE
        assert a["deviceId"] == world.device_ids["supplier_a"] and a["gasPaidBy"] == world.devices["supplier_a"].address
        b_balance = market.provider.get_balance(world.devices["supplier_b"].address)
        b = world.run(
            "publish-offer", "--service-type", SERVICE_ID, "--unit-price", str(3 * GWEI), "--units", "4",
            "--valid-for", "3600", *world.gas("relayer"), key="supplier_b",
        )  # fmt: skip
        assert b["offerId"] == 2 and b["priceHint"] == 1  # after the cheaper offer 1
        assert market.provider.get_balance(world.devices["supplier_b"].address) == b_balance == 0
        # Another market's offer and request (the watch must not report them).
        valid_until = chain.pending_timestamp + 3_600
        market.publishOffer(
            world.device_ids["supplier_a"], (OTHER_SERVICE, GWEI, 1, valid_until, ""), 0, (0, b""),
            sender=world.owners["supplier_a"],
        )  # fmt: skip
        market.postRequest((OTHER_SERVICE, 1, GWEI, valid_until, 0, ZERO_ADDRESS), value=GWEI, sender=world.admin)

        assert offer_order(world, "lowest") == [1, 2]
        assert offer_order(world, "latest") == [2, 1]
        shown = run_client(*[arg for arg in world.args("offers", "--service-type", SERVICE) if arg != "--json"])
        assert shown.returncode == 0 and "2 offer(s) of hvac-repair" in shown.stdout, shown.stderr
        assert shown.stdout.count("alive") == 2 and world.devices["supplier_a"].address in shown.stdout

        # LatestPublished takes B's newer offer although A's is cheaper.
        sensor = world.devices["sensor"].address
        first = world.run(
            "request", "--service-type", SERVICE, "--units", "1", "--max-unit-price", str(5 * GWEI),
            "--policy", "latest", "--deadline-in", "3600", "--attester", sensor, key="demander",
        )  # fmt: skip
        assert first["status"] == "Matched" and first["offerId"] == 2
        assert first["agreedUnitPrice"] == 3 * GWEI and first["refunded"] == 2 * GWEI and first["deposit"] == 5 * GWEI
        assert first["payee"] == world.owners["supplier_b"].address and first["policy"] == "LatestPublished"

        # A reprices to B's price: it goes behind B among equal prices.
        repriced = world.run("update-offer-price", "--offer", "1", "--unit-price", str(3 * GWEI), key="supplier_a")
        assert repriced["previousUnitPrice"] == 2 * GWEI and repriced["unitPrice"] == 3 * GWEI
        assert offer_order(world, "lowest") == [2, 1]

        second = world.run(
            "request", "--service-type", SERVICE, "--units", "2", "--max-unit-price", str(5 * GWEI),
            "--policy", "lowest", "--deadline-in", "3600", key="demander",
        )  # fmt: skip
        assert second["status"] == "Matched" and second["offerId"] == 2 and second["attester"] is None

        # B declines: its offer leaves the market; matching again takes A's offer.
        declined = world.run("decline", "--request", str(second["requestId"]), *world.gas("relayer"), key="supplier_b")
        assert declined["offerId"] == 2 and declined["round"] == 1 and declined["offerWithdrawn"] is True
        rematched = world.run("match-request", "--request", str(second["requestId"]), key="demander")
        assert rematched["status"] == "Matched" and rematched["offerId"] == 1 and rematched["round"] == 2

        # The sensor attests the first request's work (its relayer pays the gas).
        reading = world.tmp / "reading.json"
        reading.write_bytes(b'{"compressor": "ok", "temperature": 4.5}')
        attested = world.run(
            "attest", "--request", str(first["requestId"]), "--evidence-file", str(reading), *world.gas("relayer"),
            key="sensor",
        )  # fmt: skip
        assert attested["confirmedBy"] == sensor and attested["evidence"] == "0x" + keccak(reading.read_bytes()).hex()
        assert attested["payee"] == world.owners["supplier_b"].address and attested["supplierAmount"] == 3 * GWEI

        # The demander confirms the second itself.
        confirmed = world.run(
            "confirm", "--request", str(second["requestId"]), "--evidence", "0x" + "5a" * 32, key="demander"
        )
        assert confirmed["payee"] == world.owners["supplier_a"].address and confirmed["supplierAmount"] == 6 * GWEI

        status = world.run("request-status", "--request", str(first["requestId"]), *world.acting("owner_b")[:2])
        assert status["status"] == "Completed" and status["policy"] == "LatestPublished"
        assert status["agreedUnitPrice"] == 3 * GWEI and status["maxUnitPrice"] is None and status["escrow"] == 0
        assert status["round"] == 1 and status["attester"] == sensor
        assert status["account"] == world.owners["supplier_b"].address and status["credit"] == 3 * GWEI

        withdrawn = world.run("withdraw-credit", *world.acting("owner_b"))
        assert withdrawn["amount"] == 3 * GWEI and market.creditOf(world.owners["supplier_b"]) == 0
        nothing = run_client(*world.args("withdraw-credit", *world.acting("owner_b")))
        assert_refused(nothing, "has no market credit to withdraw")

        # Publishing again replaces the device's offer of that type; then it withdraws the new one.
        again = world.run(
            "publish-offer", "--service-type", SERVICE, "--unit-price", str(GWEI), "--units", "2",
            "--valid-for", "600", key="supplier_a",
        )  # fmt: skip
        assert again["offerId"] == 4 and again["replacedOfferId"] == 1
        withdrawn_offer = world.run("withdraw-offer", "--offer", "4", key="supplier_a")
        assert withdrawn_offer["unitsWithdrawn"] == 2
        assert offer_order(world, "earliest") == []

        out, err = watcher.communicate(timeout=100)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(event["event"], event.get("offerId"), event.get("requestId")) for event in events] == [
        ("OfferPublished", 1, None),
        ("OfferPublished", 2, None),
        ("RequestPosted", None, first["requestId"]),
        ("RequestMatched", 2, first["requestId"]),
        ("OfferPriceUpdated", 1, None),
        ("RequestPosted", None, second["requestId"]),
        ("RequestMatched", 2, second["requestId"]),
        ("AgreementDeclined", 2, second["requestId"]),
        ("OfferWithdrawn", 2, None),
        ("RequestMatched", 1, second["requestId"]),
        ("OfferWithdrawn", 1, None),
        ("OfferPublished", 4, None),
        ("OfferWithdrawn", 4, None),
    ]
    assert events[0]["serviceType"] == SERVICE_ID and events[0]["metadataURI"] == "ipfs://offer-a"
    assert events[2]["policy"] == "LatestPublished" and events[2]["attester"] == sensor
    assert events[3]["payee"] == world.owners["supplier_b"].address and events[3]["unitsLeft"] == 3
    blocks = [(event["blockNumber"], event["logIndex"]) for event in events]
    assert blocks == sorted(blocks)

    # A device catching up from a block it remembers reads the same events (eth_getLogs ranges).
    replay = run_client(
        *world.args("offers", "--service-type", SERVICE, "--watch", "--from-block", str(listing_block + 1),
                    "--max-events", "13", "--timeout", "30")
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    listing, *replayed = (json.loads(line) for line in replay.stdout.splitlines())
    assert listing["offers"] == [] and replayed == events


def test_unknown_request_is_decoded_by_name(market_world: MarketWorld) -> None:
    refused = run_client(*market_world.args("confirm", "--request", "999", key="demander"))
    line = assert_refused(refused, "ServiceMarket.confirmCompletion(999) reverted: UnknownRequest(requestId=999)")
    assert json_output(refused) == {"error": line.removeprefix("error: ")}
    unknown = run_client(*market_world.args("request-status", "--request", "999"), python_flags=("-X", "importtime"))
    assert unknown.returncode == 1 and "unknown request 999: the last request id is" in unknown.stderr
    imported = {
        line.rsplit("|", 1)[1].strip() for line in unknown.stderr.splitlines() if line.startswith("import time:")
    }
    assert "thingledger_device.market" in imported and "web3" in imported  # the check sees real imports
    assert not [name for name in imported if name == "ape" or name.startswith(("ape.", "ape_"))]


def test_out_of_range_amounts_are_refused_before_sending(market_world: MarketWorld) -> None:
    base = ["--service-type", SERVICE, "--policy", "lowest", "--deadline-in", "60"]
    web3 = market_world.market.provider.web3
    sent = web3.eth.get_transaction_count(market_world.devices["demander"].address)
    too_dear = run_client(
        *market_world.args("request", *base, "--units", "1", "--max-unit-price", str(2**96), key="demander")
    )
    assert_refused(too_dear, "--max-unit-price", "out of range", str(2**96 - 1))
    assert_refused(
        run_client(*market_world.args("request", *base, "--units", "0", "--max-unit-price", "1", key="demander")),
        "--units: must be at least 1",
    )
    assert web3.eth.get_transaction_count(market_world.devices["demander"].address) == sent  # nothing was sent


def test_a_key_that_is_not_a_device_cannot_publish(market_world: MarketWorld) -> None:
    refused = run_client(
        *market_world.args(
            "publish-offer", "--service-type", SERVICE, "--unit-price", "1", "--units", "1", "--valid-for", "60",
            key="demander",
        )
    )  # fmt: skip
    assert_refused(refused, f"key {market_world.devices['demander'].address} is not a device of DeviceRegistry")


def test_deployment_without_service_market_is_explained(market_world: MarketWorld) -> None:
    args = market_world.args("offers", "--service-type", SERVICE)
    args[args.index("--deployment") + 1] = str(market_world.old_deployment)
    assert_refused(run_client(*args), "has no ServiceMarket contract")

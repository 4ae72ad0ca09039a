"""End to end: a gate device released through the thingledger-device CLI, on anvil (run by `ape test`).

Ape deploys DeviceRegistry and SalesOrder; the gate's key is made by `thingledger-device keygen` and
provisioned with its `sign-provisioning` signature; the warehouse activates it and admits the seller; a
buyer buys an order. Then the CLIs run as subprocesses, as on the Raspberry Pi: challenge -> buyer
sign-challenge -> verify -> pickup, and the refusals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from client_helpers import PASSWORD, assert_refused, json_output, run_client, write_deployment
from eth_account import Account
from thingledger_device.chain import connect
from thingledger_device.deployment import load_deployment
from thingledger_device.typed_data import record_tuple

RELEASE = 4
RELEASED = 3
PRICE = 10**9 * 1_000_000  # 0.001 ether, a whole number of gwei
SCRYPT_N = 2**14


@dataclass
class PickupWorld:
    """Everything the tests need about the deployed world."""

    rpc: str
    chain_id: int
    registry: Any
    sales_order: Any
    deployment: Path
    keystore: Path
    password_file: Path
    state_dir: Path
    address: str
    gate_id: int
    warehouse: Any
    seller: Any
    buyer: Any
    impostor: Any
    buyer_keystore: Path
    impostor_keystore: Path
    relayer_keystore: Path
    relayer: Any
    tmp: Path

    def device_args(self, *extra: str, deployment: Path | None = None) -> list[str]:
        return [
            *extra,
            "--deployment",
            str(deployment or self.deployment),
            "--rpc",
            self.rpc,
            "--keystore",
            str(self.keystore),
            "--password-file",
            str(self.password_file),
            "--state-dir",
            str(self.state_dir),
            "--json",
        ]


def write_keystore(path: Path, private_key: Any) -> Path:
    path.write_text(json.dumps(Account.encrypt(private_key, PASSWORD, kdf="scrypt", iterations=SCRYPT_N)))
    return path


@pytest.fixture(scope="module")
def pickup_world(tmp_path_factory: pytest.TempPathFactory, accounts: Any, project: Any, chain: Any) -> PickupWorld:
    tmp = tmp_path_factory.mktemp("gate")
    admin, manufacturer, warehouse, seller, buyer, impostor, relayer = (accounts[i] for i in range(7))
    password_file = tmp / "password.txt"
    password_file.write_text(PASSWORD + "\n")

    keystore = tmp / "gate-key.json"
    created = run_client("keygen", "--keystore", str(keystore), "--password-file", str(password_file), "--json")
    assert created.returncode == 0, created.stderr
    address = json_output(created)["address"]

    registry = project.DeviceRegistry.deploy(admin, sender=admin)
    sales_order = project.SalesOrder.deploy(registry, admin, sender=admin)
    registry.grantRole(registry.MANUFACTURER_ROLE(), manufacturer, sender=admin)
    deployment = write_deployment(
        tmp / "deployment.json",
        chain_id=chain.chain_id,
        registry=registry.address,
        sales_order=sales_order.address,
        deployer=admin.address,
    )

    record_file = tmp / "record.json"
    record_file.write_text(
        json.dumps(
            {
                "model": "GateKeeper Pi 4",
                "serial": "GK-0001",
                "firmwareHash": "0x" + "ab" * 32,
                "manufacturedAt": chain.pending_timestamp - 86_400,
                "warrantyEnd": chain.pending_timestamp + 365 * 86_400,
                "metadataURI": "ipfs://gatekeeper-0001",
            }
        )
    )
    signed = run_client(
        "sign-provisioning",
        "--keystore", str(keystore),
        "--password-file", str(password_file),
        "--deployment", str(deployment),
        "--manufacturer", manufacturer.address,
        "--record", str(record_file),
        "--json",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    payload = json_output(signed)
    record = payload["record"]
    registry.provision(
        payload["key"],
        record_tuple(record),
        payload["deadline"],
        payload["signature"],
        sender=manufacturer,
    )
    gate_id = int(address, 16)
    registry.transferFrom(manufacturer, warehouse, gate_id, sender=manufacturer)
    registry.activate(gate_id, sender=warehouse)
    registry.grantPermissions(gate_id, seller, RELEASE, chain.pending_timestamp + 30 * 86_400, sender=warehouse)
    admin.transfer(address, 10**17)  # the gate pays its own gas unless a relayer does

    return PickupWorld(
        rpc=chain.provider.http_uri,
        chain_id=chain.chain_id,
        registry=registry,
        sales_order=sales_order,
        deployment=deployment,
        keystore=keystore,
        password_file=password_file,
        state_dir=tmp / "state",
        address=address,
        gate_id=gate_id,
        warehouse=warehouse,
        seller=seller,
        buyer=buyer,
        impostor=impostor,
        buyer_keystore=write_keystore(tmp / "buyer-key.json", buyer.private_key),
        impostor_keystore=write_keystore(tmp / "impostor-key.json", impostor.private_key),
        relayer_keystore=write_keystore(tmp / "relayer-key.json", relayer.private_key),
        relayer=relayer,
        tmp=tmp,
    )


def paid_order(pickup_world: PickupWorld, serial: str) -> int:
    """A new order of the seller, bought by the buyer."""
    pickup_world.sales_order.createOrder(("Acme", "Widget", 2024, serial), PRICE, 0, 0, sender=pickup_world.seller)
    order_id = int(pickup_world.sales_order.lastOrderId())
    pickup_world.sales_order.buy(order_id, value=PRICE, sender=pickup_world.buyer)
    return order_id


def receipt_uri(pickup_world: PickupWorld, order_id: int, buyer: str) -> str:
    made = run_client(
        "receipt", "--deployment", str(pickup_world.deployment), "--order", str(order_id), "--buyer", buyer, "--json",
        module="thingledger_device.buyer_cli",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    uri: str = json_output(made)["receipt"]
    return uri


def issue_challenge(pickup_world: PickupWorld, receipt: str, name: str) -> Path:
    issued = run_client(*pickup_world.device_args("challenge", "--receipt", receipt))
    assert issued.returncode == 0, issued.stderr
    path = pickup_world.tmp / f"{name}-challenge.json"
    path.write_text(issued.stdout)
    return path


def sign(pickup_world: PickupWorld, challenge: Path, keystore: Path, name: str) -> Path:
    signed = run_client(
        "sign-challenge", "--keystore", str(keystore), "--password-file", str(pickup_world.password_file),
        "--challenge", str(challenge), module="thingledger_device.buyer_cli",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    path = pickup_world.tmp / f"{name}-response.json"
    path.write_text(signed.stdout)
    return path


def order_status(pickup_world: PickupWorld, order_id: int) -> int:
    return int(pickup_world.sales_order.getOrder(order_id).status)


def test_status_shows_the_active_gate(pickup_world: PickupWorld) -> None:
    status = json_output(run_client(*pickup_world.device_args("status")))
    assert status["deviceId"] == pickup_world.gate_id
    assert status["state"] == "Active"
    assert status["owner"] == pickup_world.warehouse.address
    assert status["nonce"] == 1
    assert status["warrantyActive"] is True


def test_pickup_releases_the_order_then_actuates(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-PICKUP")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    challenge_path = issue_challenge(pickup_world, receipt, "pickup")
    challenge = json.loads(challenge_path.read_text())
    assert challenge["orderId"] == order_id and challenge["gateId"] == pickup_world.gate_id
    assert challenge["chainId"] == pickup_world.chain_id and challenge["salesOrder"] == pickup_world.sales_order.address
    response = sign(pickup_world, challenge_path, pickup_world.buyer_keystore, "pickup")

    # verify checks everything but does not consume the challenge: it can run twice.
    for _ in range(2):
        verified = run_client(*pickup_world.device_args("verify", "--receipt", receipt, "--response", str(response)))
        assert verified.returncode == 0, verified.stderr
        result = json_output(verified)
        assert result["verified"] is True
        assert result["orderId"] == order_id and result["buyer"] == pickup_world.buyer.address
        assert result["gateId"] == pickup_world.gate_id and result["orderStatus"] == "Paid"
    assert order_status(pickup_world, order_id) == 2  # still Paid

    gate_balance = pickup_world.sales_order.provider.get_balance(pickup_world.address)
    picked = run_client(*pickup_world.device_args("pickup", "--receipt", receipt, "--response", str(response)))
    assert picked.returncode == 0, picked.stderr
    result = json_output(picked)
    assert result["released"] is True and result["orderId"] == order_id
    assert result["buyer"] == pickup_world.buyer.address and result["gasUsed"] > 0
    assert order_status(pickup_world, order_id) == RELEASED
    assert pickup_world.sales_order.creditOf(pickup_world.seller) == PRICE
    assert pickup_world.sales_order.provider.get_balance(pickup_world.address) < gate_balance  # the gate paid the gas
    receipt_on_chain = pickup_world.sales_order.provider.web3.eth.get_transaction_receipt(result["txHash"])
    assert receipt_on_chain["status"] == 1
    # How a gate recognises a release someone else submitted (a copy of its own): the OrderReleased event
    # of this order, at this gate, to this buyer.
    chain = connect(pickup_world.rpc, load_deployment(pickup_world.deployment))
    found = chain.release_of(order_id, pickup_world.gate_id, pickup_world.buyer.address, 0)
    assert found is not None and found.tx_hash == result["txHash"] and found.gas_used == result["gasUsed"]
    assert chain.release_of(order_id, pickup_world.gate_id, pickup_world.impostor.address, 0) is None
    assert chain.release_of(order_id, pickup_world.gate_id + 1, pickup_world.buyer.address, 0) is None

    log_lines = (pickup_world.state_dir / "actuator.log").read_text().splitlines()
    logged = json.loads(log_lines[-1])
    assert logged["action"] == "release" and logged["order_id"] == order_id
    assert logged["buyer"] == pickup_world.buyer.address and logged["tx_hash"] == result["txHash"]

    # The same signed challenge cannot be used again.
    again = run_client(*pickup_world.device_args("pickup", "--receipt", receipt, "--response", str(response)))
    assert_refused(again, "already used")
    assert json_output(again) == {"error": again.stderr.strip().removeprefix("error: ")}
    assert len((pickup_world.state_dir / "actuator.log").read_text().splitlines()) == len(log_lines)


def test_relayer_pays_the_gas_when_given(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-RELAYED")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    response = sign(
        pickup_world, issue_challenge(pickup_world, receipt, "relayed"), pickup_world.buyer_keystore, "relayed"
    )
    gate_balance = pickup_world.sales_order.provider.get_balance(pickup_world.address)
    relayer_balance = pickup_world.relayer.balance
    picked = run_client(
        *pickup_world.device_args("pickup", "--receipt", receipt, "--response", str(response)),
        "--gas-keystore", str(pickup_world.relayer_keystore), "--gas-password-file", str(pickup_world.password_file),
    )  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    assert order_status(pickup_world, order_id) == RELEASED
    assert pickup_world.sales_order.provider.get_balance(pickup_world.address) == gate_balance
    assert pickup_world.relayer.balance < relayer_balance


def test_impostor_signing_the_challenge_is_refused(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-IMPOSTOR")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    response = sign(
        pickup_world, issue_challenge(pickup_world, receipt, "impostor"), pickup_world.impostor_keystore, "impostor"
    )
    for command in ("verify", "pickup"):
        refused = run_client(*pickup_world.device_args(command, "--receipt", receipt, "--response", str(response)))
        assert_refused(refused, f"signer {pickup_world.impostor.address} is not the buyer {pickup_world.buyer.address}")
    assert order_status(pickup_world, order_id) == 2


def test_impostor_with_a_receipt_in_their_own_name_is_refused(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-FORGED")
    forged = receipt_uri(pickup_world, order_id, pickup_world.impostor.address)
    response = sign(
        pickup_world, issue_challenge(pickup_world, forged, "forged"), pickup_world.impostor_keystore, "forged"
    )
    refused = run_client(*pickup_world.device_args("pickup", "--receipt", forged, "--response", str(response)))
    assert_refused(
        refused, f"{pickup_world.impostor.address} does not own order {order_id}", "verifyOwnership is false"
    )
    assert order_status(pickup_world, order_id) == 2


def test_wrong_chain_deployment_is_refused(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-WRONG-CHAIN")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    other = json.loads(pickup_world.deployment.read_text())
    other["chainId"] = pickup_world.chain_id + 1
    wrong = pickup_world.tmp / "wrong-chain.json"
    wrong.write_text(json.dumps(other))
    refused = run_client(*pickup_world.device_args("challenge", "--receipt", receipt, deployment=wrong))
    assert_refused(
        refused,
        f"wrong chain: deployment is for chain {pickup_world.chain_id + 1}, RPC serves chain {pickup_world.chain_id}",
    )


def test_unknown_order_is_refused(pickup_world: PickupWorld) -> None:
    last = int(pickup_world.sales_order.lastOrderId())
    receipt = receipt_uri(pickup_world, last + 100, pickup_world.buyer.address)
    refused = run_client(*pickup_world.device_args("challenge", "--receipt", receipt))
    assert_refused(refused, f"unknown order {last + 100}", f"the last order id is {last}")


def test_suspended_gate_is_not_authorized(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-SUSPENDED")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    response = sign(
        pickup_world, issue_challenge(pickup_world, receipt, "suspended"), pickup_world.buyer_keystore, "suspended"
    )
    pickup_world.registry.suspend(pickup_world.gate_id, sender=pickup_world.warehouse)
    refused = run_client(*pickup_world.device_args("pickup", "--receipt", receipt, "--response", str(response)))
    assert_refused(refused, "device not authorized", "is Suspended, not Active")
    assert order_status(pickup_world, order_id) == 2


def test_seller_not_admitted_is_refused(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-REVOKED")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    pickup_world.registry.revokePermissions(pickup_world.gate_id, pickup_world.seller, sender=pickup_world.warehouse)
    refused = run_client(*pickup_world.device_args("challenge", "--receipt", receipt))
    assert_refused(refused, "device not authorized", f"does not admit seller {pickup_world.seller.address}")


def test_the_client_never_imports_ape(pickup_world: PickupWorld) -> None:
    order_id = paid_order(pickup_world, "SN-IMPORTS")
    receipt = receipt_uri(pickup_world, order_id, pickup_world.buyer.address)
    response = sign(
        pickup_world, issue_challenge(pickup_world, receipt, "imports"), pickup_world.buyer_keystore, "imports"
    )
    verified = run_client(
        *pickup_world.device_args("verify", "--receipt", receipt, "--response", str(response)),
        python_flags=("-X", "importtime"),
    )
    assert verified.returncode == 0, verified.stderr
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in verified.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "web3" in imported and "thingledger_device.chain" in imported  # the check sees real imports
    assert not [name for name in imported if name == "ape" or name.startswith(("ape.", "ape_"))]

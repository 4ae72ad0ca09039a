"""The sales-order story of reference document 003, end to end on a local chain.

    ape run demo            (what `./run.sh demo` runs; Ape starts anvil and stops it at the end)

A manufacturer provisions a warehouse gate device and an item device; the warehouse
operator admits the seller at its gate; the seller lists the item; the buyer buys
it and gets a QR receipt; the gate's device client (its own process, using only the
thingledger_device package) challenges the buyer, verifies, releases on chain and
drives its actuator; an impostor holding a copy of the receipt is refused; the seller
withdraws. Every step is a row of the final table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ape import accounts, chain, project
from eth_account import Account
from rich.console import Console
from thingledger_device.typed_data import record_tuple

# Scripts are loaded by file, so the modules beside this one (deploy.py, _demo_story.py) come through sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_story import DemoFailure, Story  # noqa: E402
from deploy import deploy_contracts, write_deployment  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "demo-output"
PASSWORD = "thingledger-demo"
PERMISSION_RELEASE = 4
DAY = 86_400

console = Console()


def write_keystore(name: str, private_key: str) -> Path:
    """An encrypted keystore for a demo account (the device client and the buyer command read these)."""
    path = OUTPUT / f"{name}.json"
    keystore = Account.encrypt(private_key, PASSWORD, kdf="scrypt", iterations=2**14)
    path.write_text(json.dumps(keystore))
    path.chmod(0o600)
    return path


def run_client(program: str, *args: str, expect_failure: bool = False, stdin: str | None = None) -> dict[str, Any]:
    """Runs the device client (`device`) or the buyer command (`buyer`) as its own process, in --json mode."""
    module = {"device": "thingledger_device", "buyer": "thingledger_device.buyer_cli"}[program]
    command = [sys.executable, "-m", module, *args, "--json"]
    env = {**os.environ, "THINGLEDGER_KEYSTORE_PASSWORD": PASSWORD, "THINGLEDGER_GAS_KEYSTORE_PASSWORD": PASSWORD}
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    try:
        output = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise DemoFailure(f"{program} {args[0]} printed no JSON (exit {result.returncode}): {result.stderr.strip()}")
    if expect_failure != (result.returncode != 0):
        raise DemoFailure(f"{program} {args[0]} exited {result.returncode}: {output}")
    return output


def main() -> None:
    try:
        story = tell_story()
    except DemoFailure as failure:
        console.print(f"[bold red]demo failed:[/] {failure}")
        sys.exit(1)
    console.print(story.table())
    console.print(f"Receipt QR code: {OUTPUT / 'receipt.png'}; keystores and deployment file in {OUTPUT}/")


def tell_story() -> Story:
    OUTPUT.mkdir(exist_ok=True)
    for stale in OUTPUT.glob("*"):
        if stale.is_file():
            stale.unlink()
    story = Story("thingledger: the sales order of document 003 on a local chain", console)
    admin, manufacturer, operator, seller, buyer, impostor = accounts.test_accounts[:6]

    contracts, deployment = deploy_contracts(admin, admin.address, (manufacturer.address,))
    registry, sales_order = contracts["DeviceRegistry"], contracts["SalesOrder"]
    deployment_file = write_deployment(deployment, OUTPUT)
    write_deployment(deployment)  # deployments/31337.json, as `ape run deploy` would
    story.note("admin", f"deploy DeviceRegistry {registry.address[:10]}…", registry.txn_hash)
    story.note("admin", f"deploy SalesOrder {sales_order.address[:10]}…, grant manufacturer role", sales_order.txn_hash)

    rpc = chain.provider.http_uri
    common = ["--deployment", str(deployment_file), "--rpc", rpc]
    state_dir = ["--state-dir", str(OUTPUT / "gate-state")]
    gate_keystore, item_keystore = OUTPUT / "gate-key.json", OUTPUT / "item-key.json"

    # Each device makes its own key; the manufacturer only ever sees addresses and signatures.
    device_ids = {}
    for name, keystore, model in (("gate", gate_keystore, "GateController-2"), ("item", item_keystore, "ColdBox-7")):
        address = run_client("device", "keygen", "--keystore", str(keystore))["address"]
        now = chain.pending_timestamp
        record = {
            "model": model,
            "serial": f"{model[:2].upper()}-{address[2:10]}",
            "firmwareHash": "0x" + "ab" * 32,
            "manufacturedAt": now,
            "warrantyEnd": now + 2 * 365 * DAY,
            "metadataURI": f"ipfs://thingledger-demo/{model}.json",
        }
        record_file = OUTPUT / f"{name}-record.json"
        record_file.write_text(json.dumps(record))
        signed = run_client(
            "device", "sign-provisioning", "--keystore", str(keystore), *common,
            "--manufacturer", manufacturer.address, "--record", str(record_file),
        )
        receipt = registry.provision(
            address, record_tuple(record), signed["deadline"], signed["signature"], sender=manufacturer
        )
        device_ids[name] = int(address, 16)
        story.tx("manufacturer", f"provision {name} device {address[:10]}… (device-signed)", receipt)

    gate_id, item_id = device_ids["gate"], device_ids["item"]
    story.tx("manufacturer", "sell gate device to the warehouse operator",
             registry.transferFrom(manufacturer, operator, gate_id, sender=manufacturer))
    story.tx("manufacturer", "sell item device to the seller",
             registry.transferFrom(manufacturer, seller, item_id, sender=manufacturer))
    story.tx("warehouse operator", "activate the gate", registry.activate(gate_id, sender=operator))
    story.tx("seller", "activate the item", registry.activate(item_id, sender=seller))
    story.tx("warehouse operator", "admit the seller at the gate (RELEASE permission, 30 days)",
             registry.grantPermissions(gate_id, seller, PERMISSION_RELEASE, chain.pending_timestamp + 30 * DAY,
                                       sender=operator))

    price = 250_000_000_000_000_000  # 0.25 ether
    story.tx("seller", "approve SalesOrder to hold the item's token",
             registry.approve(sales_order.address, item_id, sender=seller))
    receipt = sales_order.createOrder(("Acme", "ColdBox-7", 2026, "CB7-0001"), price,
                                      chain.pending_timestamp + 7 * DAY, item_id, sender=seller)
    order_id = sales_order.lastOrderId()
    story.tx("seller", f"list order {order_id}: Acme ColdBox-7 (2026) for 0.25 ETH, pickup within 7 days", receipt)
    story.tx("buyer", f"buy order {order_id} (money and the item's token held in escrow)",
             sales_order.buy(order_id, value=price, sender=buyer))
    if registry.ownerOf(item_id) != sales_order.address:
        raise DemoFailure("the item's token is not in escrow after the purchase")

    receipt_info = run_client("buyer", "receipt", "--deployment", str(deployment_file), "--order", str(order_id),
                              "--buyer", buyer.address, "--png", str(OUTPUT / "receipt.png"))
    receipt_uri = receipt_info["receipt"]
    subprocess.run([sys.executable, "-m", "thingledger_device.buyer_cli", "receipt", "--deployment",
                    str(deployment_file), "--order", str(order_id), "--buyer", buyer.address], check=True)
    story.note("buyer", "receives the QR receipt (chain, contract, order, buyer)")

    buyer_keystore = write_keystore("buyer", buyer.private_key)
    impostor_keystore = write_keystore("impostor", impostor.private_key)
    gas_keystore = write_keystore("warehouse-gas", operator.private_key)
    gate = ["--keystore", str(gate_keystore), *common, *state_dir]

    # The impostor photographed the receipt, but cannot sign for the buyer's key.
    challenge = run_client("device", "challenge", *gate, "--receipt", receipt_uri)
    forged = run_client("buyer", "sign-challenge", "--keystore", str(impostor_keystore), "--challenge", "-",
                        stdin=json.dumps(challenge))
    refused = run_client("device", "verify", *gate, "--receipt", receipt_uri, "--response", "-",
                         stdin=json.dumps(forged), expect_failure=True)
    story.note("impostor", f"shows a copy of the receipt: refused ({refused['error']})")

    challenge = run_client("device", "challenge", *gate, "--receipt", receipt_uri)
    story.note("gate device", f"issues challenge {challenge['challenge'][:12]}…")
    response = run_client("buyer", "sign-challenge", "--keystore", str(buyer_keystore), "--challenge", "-",
                          stdin=json.dumps(challenge))
    story.note("buyer", "signs the challenge with the wallet key")
    pickup = run_client("device", "pickup", *gate, "--receipt", receipt_uri, "--response", "-",
                        "--gas-keystore", str(gas_keystore), "--actuator", "log", stdin=json.dumps(response))
    story.note("gate device", "verifyOwnership ✓; release (gate + buyer signatures: item token to the buyer), then actuator opens",
               pickup.get("txHash", ""), pickup.get("gasUsed"))
    if sales_order.getOrder(order_id).status != 3:  # Released
        raise DemoFailure("the order is not Released after pickup")
    if registry.ownerOf(item_id) != buyer.address:
        raise DemoFailure("the item's token did not pass to the buyer with the release")

    credit = sales_order.creditOf(seller)
    story.tx("seller", f"withdraw {credit / 10**18:g} ETH", sales_order.withdraw(sender=seller))
    if sales_order.creditOf(seller) != 0 or sales_order.balance != 0:
        raise DemoFailure("money is left in SalesOrder after the seller withdrew")
    return story

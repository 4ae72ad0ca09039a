"""Gas figures of thingledger's contracts, against the two baselines, on a fresh local chain.

    python bench/gas_foundation.py            # tables (rich)
    python bench/gas_foundation.py --json     # one JSON object with every figure

Starts its own anvil through Ape's foundry provider, compiles DeviceRegistry, SalesOrder and ServiceMarket
through the Ape project and the baselines (bench/baselines/*.sol) with py-solc-x using the very compiler settings ape-solidity
uses for the project (read from ape-solidity, not copied), deploys everything in the same run and reads
`gas_used` from the receipts: whole-transaction gas, 21,000 intrinsic and calldata included.

A steady-state figure is the median of several repetitions whose storage writes are alike (same slots going
zero -> non-zero or non-zero -> non-zero); the note of each row says what was repeated. A target MISS is a
finding, not a failure: the exit status is 0 whenever the benchmark ran, 1 when it could not run, 2 on bad usage.
See bench/README.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_cli

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "bench" / "baselines"
NETWORK = "ethereum:local:foundry"

# Targets: (name, numerator key, denominator key, limit, how the limit reads)
TARGETS = (
    (
        "provision (steady) / bare ERC-721 mint (steady)",
        "provision.steady",
        "baseline.bare_mint.steady",
        2.0,
        "<= 2.0x",
    ),
    (
        "createOrder (known type, no deadline) / PaperSalesOrder deployment",
        "createOrder.known_type",
        "baseline.paper.deploy",
        0.15,
        "<= 15%",
    ),
)

# Realistic inputs.
DEVICE_MODEL = "GateController-2"
FIRMWARE_VERSION = "GateController-2 firmware 2.4.1"
MANUFACTURED_AT = 1741910400  # 2025-03-14T00:00:00Z
WARRANTY_END = 1804982400  # 2027-03-14T00:00:00Z
ITEM_MAKE, ITEM_MODEL, ITEM_YEAR = "Toyota", "Camry", 2018
ITEM_SERIAL = "4T1BF1FK5CU123456"
DEVICE_ITEM_MAKE = "Acme Devices"
PRICE_WEI = 8_500_000_000_000_000_000  # 8.5 ether, a whole number of gwei as SalesOrder requires
RELEASE_PERMISSION = 1 << 2  # DevicePermissions.RELEASE
ONE_HOUR = 3600


# ---------------------------------------------------------------------------------------------- figures


@dataclass
class Figure:
    key: str
    label: str
    samples: list[int]
    note: str
    section: str
    steady: bool = field(default=False)

    @property
    def gas(self) -> int:
        return int(round(statistics.median(self.samples)))

    @property
    def method(self) -> str:
        if len(self.samples) == 1:
            return "single transaction"
        low, high = min(self.samples), max(self.samples)
        spread = "" if low == high else f", range {low:,}-{high:,}"
        return f"median of {len(self.samples)}{spread}"


class Recorder:
    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def add(self, section: str, key: str, label: str, samples: list[int], note: str) -> None:
        if not samples:
            raise RuntimeError(f"no sample for {key}")
        self.figures[key] = Figure(key, label, list(samples), note, section)

    def gas(self, key: str) -> int:
        return self.figures[key].gas


def gas_of(receipt: Any) -> int:
    if getattr(receipt, "failed", False):
        raise RuntimeError(f"transaction {receipt.txn_hash} reverted")
    return int(receipt.gas_used)


# ---------------------------------------------------------------------------------------------- inputs


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def metadata_uri(serial: str) -> str:
    """A CIDv0 (sha2-256 multihash, base58) of the device's metadata document: always 60 characters."""
    import hashlib

    cid = _base58(b"\x12\x20" + hashlib.sha256(f"thingledger metadata {serial}".encode()).digest())
    uri = f"ipfs://{cid}/record"
    assert len(uri) == 60, uri
    return uri


def manufacturing_record(index: int) -> dict[str, Any]:
    from eth_utils import keccak

    serial = f"GC2-2503-{index:06d}"
    return {
        "model": DEVICE_MODEL,
        "serial": serial,
        "firmwareHash": keccak(text=FIRMWARE_VERSION),
        "manufacturedAt": MANUFACTURED_AT,
        "warrantyEnd": WARRANTY_END,
        "metadataURI": metadata_uri(serial),
    }




def key_account(label: str, index: int) -> Any:
    """A deterministic local key (device keys and spare addresses), so figures repeat run to run."""
    from eth_account import Account
    from eth_utils import keccak

    return Account.from_key(keccak(text=f"thingledger bench {label} {index}"))


def item(serial_number: int, year: int = ITEM_YEAR, make: str = ITEM_MAKE, model: str = ITEM_MODEL) -> tuple:
    serial = ITEM_SERIAL if serial_number == 0 else f"{ITEM_SERIAL[:-6]}{123456 + serial_number:06d}"
    return (make, model, year, serial)


# ---------------------------------------------------------------------------------------------- compilation


def project_compiler_settings() -> dict[str, Any]:
    """The settings ape-solidity compiles the project's contracts with (optimizer, EVM version, via-IR)."""
    from ape import compilers

    by_version = compilers.solidity.get_compiler_settings(
        [ROOT / "contracts" / name for name in ("DeviceRegistry.sol", "SalesOrder.sol", "ServiceMarket.sol")]
    )
    if len(by_version) != 1:
        raise RuntimeError(f"expected one solc version for the project, ape-solidity reports {list(by_version)}")
    ((version, settings),) = by_version.items()
    picked = {k: settings[k] for k in ("optimizer", "evmVersion", "viaIR") if k in settings}
    return {"solc_version": str(version).split("+")[0], "settings": picked}


def compile_baselines(compiler: dict[str, Any]) -> dict[str, Any]:
    """Compiles bench/baselines/*.sol with py-solc-x; returns ContractContainers by contract name."""
    import solcx
    from ape.contracts import ContractContainer
    from ethpm_types import ContractType

    sources = {
        f"bench/baselines/{path.name}": {"content": path.read_text()} for path in sorted(BASELINES.glob("*.sol"))
    }
    standard_input = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            **compiler["settings"],
            "remappings": ["@openzeppelin/contracts=node_modules/@openzeppelin/contracts"],
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }
    output = solcx.compile_standard(
        standard_input, solc_version=compiler["solc_version"], base_path=str(ROOT), allow_paths=[str(ROOT)]
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("baseline compilation failed: " + errors[0].get("formattedMessage", str(errors[0])))
    containers = {}
    for source in sources:
        for name, compiled in output["contracts"][source].items():
            contract_type = ContractType.model_validate(
                {
                    "contractName": name,
                    "sourceId": source,
                    "abi": compiled["abi"],
                    "deploymentBytecode": {"bytecode": "0x" + compiled["evm"]["bytecode"]["object"]},
                    "runtimeBytecode": {"bytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"]},
                }
            )
            containers[name] = ContractContainer(contract_type)
    for name in ("BareERC721Mint", "PaperSalesOrder"):
        if name not in containers:
            raise RuntimeError(f"baseline contract {name} not found in bench/baselines/")
    return containers


# ---------------------------------------------------------------------------------------------- the run


def run_benchmark(reps: int) -> dict[str, Any]:
    import solcx  # noqa: F401  (fail early with a clear message when missing)
    from ape import accounts, chain, networks, project
    from ape.logging import logger
    from eth_account import Account

    typed_data = bench_cli.device_typed_data()
    logger.set_level("ERROR")
    started = time.monotonic()
    compiler = project_compiler_settings()
    baselines = compile_baselines(compiler)
    registry_type, sales_type = project.DeviceRegistry, project.SalesOrder
    rec = Recorder()

    with networks.parse_network_choice(NETWORK) as provider:
        web3 = provider.web3
        try:
            node_info = provider.make_request("anvil_nodeInfo", [])
            hardfork = str(node_info.get("hardFork") or node_info.get("hardfork") or "unknown")
        except Exception:  # noqa: BLE001 - informative only
            hardfork = "unknown"
        client = web3.client_version
        chain_id = chain.chain_id

        (admin, manufacturer, gate_owner, seller, buyer, relayer) = accounts.test_accounts[:6]

        def receipt_of(instance: Any) -> Any:
            return chain.get_receipt(instance.txn_hash)

        def now() -> int:
            return int(chain.pending_timestamp)

        # ------------------------------------------------------------------ deployments
        registry = admin.deploy(registry_type, admin)
        sales = admin.deploy(sales_type, registry, admin)
        bare = admin.deploy(baselines["BareERC721Mint"])
        for key, label, instance in (
            ("deploy.DeviceRegistry", "deploy DeviceRegistry", registry),
            ("deploy.SalesOrder", "deploy SalesOrder", sales),
            ("deploy.BareERC721Mint", "deploy BareERC721Mint (baseline)", bare),
        ):
            rec.add("deploy", key, label, [gas_of(receipt_of(instance))], "once per chain")
        registry.grantRole(registry.MANUFACTURER_ROLE(), manufacturer, sender=admin)

        # ------------------------------------------------------------------ provision
        # Devices: reps+1 go to the gate owner (first transfer + steady transfers; the gates and the rotated
        # device come from these), reps+3 go to the seller (reps+2 listed as device items, one kept so that
        # listing never empties the seller's balance), one stays with the manufacturer so that every transfer
        # leaves it holding tokens.
        n_devices = (reps + 1) + (reps + 3) + 1
        device_keys = [key_account("device", i) for i in range(n_devices)]
        records = [manufacturing_record(i + 1) for i in range(n_devices)]
        provision_gas = []
        for key, record in zip(device_keys, records):
            deadline = now() + ONE_HOUR
            message = typed_data.provision_message(
                chain_id, registry.address, key.address, manufacturer.address, record, deadline
            )
            signature = Account.sign_typed_data(key.key, full_message=message).signature
            receipt = registry.provision(key.address, typed_data.record_tuple(record), deadline, signature, sender=manufacturer)
            provision_gas.append(gas_of(receipt))
        device_ids = [int(key.address, 16) for key in device_keys]
        rec.add(
            "device",
            "provision.first",
            "provision (manufacturer's first device)",
            provision_gas[:1],
            "balance 0 -> 1: one more slot goes zero -> non-zero",
        )
        rec.add(
            "device",
            "provision.steady",
            "provision (steady state)",
            provision_gas[1:],
            "manufacturer already holds devices; a new key and serial each time",
        )

        # ------------------------------------------------------------------ bare ERC-721 mint (baseline)
        bare_ids = [int(key_account("bare token", i).address, 16) for i in range(reps + 2)]
        bare_mint_gas = [gas_of(bare.mint(manufacturer, token_id, sender=manufacturer)) for token_id in bare_ids]
        rec.add(
            "baseline",
            "baseline.bare_mint.first",
            "bare ERC-721 mint (recipient's first token)",
            bare_mint_gas[:1],
            "balance 0 -> 1",
        )
        rec.add(
            "baseline",
            "baseline.bare_mint.steady",
            "bare ERC-721 mint (steady state)",
            bare_mint_gas[1:],
            "same recipient already holds tokens; 160-bit ids like device ids",
        )
        bare_transfer_gas = [
            gas_of(bare.transferFrom(manufacturer, gate_owner, token_id, sender=manufacturer))
            for token_id in bare_ids[:-1]
        ]
        rec.add(
            "baseline",
            "baseline.bare_transfer.steady",
            "bare ERC-721 transferFrom (steady state)",
            bare_transfer_gas[1:],
            "context for the registry's transfer; receiver already holds tokens",
        )

        # ------------------------------------------------------------------ activate
        activate_gas = [gas_of(registry.activate(device_id, sender=manufacturer)) for device_id in device_ids]
        rec.add("device", "activate", "activate", activate_gas, "Provisioned -> Active by the owner, every device")

        # ------------------------------------------------------------------ ERC-721 transfer
        owner_devices = device_ids[: reps + 1]
        seller_devices = device_ids[reps + 1 : 2 * reps + 4]
        transfer_gas = [
            gas_of(registry.transferFrom(manufacturer, gate_owner, device_id, sender=manufacturer))
            for device_id in owner_devices
        ]
        for device_id in seller_devices:
            registry.transferFrom(manufacturer, seller, device_id, sender=manufacturer)
        rec.add(
            "device",
            "transfer.first",
            "ERC-721 transferFrom (receiver's first device)",
            transfer_gas[:1],
            "receiver balance 0 -> 1",
        )
        rec.add(
            "device",
            "transfer.steady",
            "ERC-721 transferFrom (steady state)",
            transfer_gas[1:],
            "owner -> other who already holds devices; bumps the ownership epoch",
        )

        release_gate, action_gate, rotated_device = owner_devices[0], owner_devices[1], owner_devices[2]
        key_by_id = dict(zip(device_ids, device_keys))

        # ------------------------------------------------------------------ grantPermissions
        expires_at = now() + 365 * 24 * ONE_HOUR
        grantees = [seller.address] + [key_account("grantee", i).address for i in range(reps - 1)]
        grant_gas = [
            gas_of(registry.grantPermissions(release_gate, grantee, RELEASE_PERMISSION, expires_at, sender=gate_owner))
            for grantee in grantees
        ]
        rec.add(
            "device",
            "grantPermissions",
            "grantPermissions",
            grant_gas,
            "new grant (RELEASE, 1 year) to a new grantee each time",
        )

        # ------------------------------------------------------------------ device-signed action, called directly
        def device_signature(device_id: int, key: Any, target: str, action: bytes, deadline: int) -> bytes:
            nonce = registry.getDevice(device_id).nonce
            message = typed_data.device_action_message(
                chain_id, registry.address, device_id, target, action, nonce, deadline
            )
            return Account.sign_typed_data(key.key, full_message=message).signature

        from eth_utils import keccak

        action_gas = []
        for i in range(reps):
            action = keccak(text=f"open door {i}")
            deadline = now() + ONE_HOUR
            signature = device_signature(action_gate, key_by_id[action_gate], relayer.address, action, deadline)
            receipt = registry.useDeviceAction(action_gate, action, deadline, signature, sender=relayer)
            action_gas.append(gas_of(receipt))
        rec.add(
            "device",
            "useDeviceAction.direct",
            "useDeviceAction (EOA target calls the registry)",
            action_gas,
            "same Active device, consecutive nonces",
        )

        # ------------------------------------------------------------------ rotateKey
        rotate_gas = []
        for i in range(reps):
            new_key = key_account("rotated key", i)
            deadline = now() + ONE_HOUR
            nonce = registry.getDevice(rotated_device).nonce
            message = typed_data.rotate_key_message(
                chain_id, registry.address, rotated_device, new_key.address, nonce, deadline
            )
            signature = Account.sign_typed_data(new_key.key, full_message=message).signature
            receipt = registry.rotateKey(rotated_device, new_key.address, deadline, signature, sender=gate_owner)
            rotate_gas.append(gas_of(receipt))
        rec.add("device", "rotateKey", "rotateKey", rotate_gas, "same device, a never-used key each time")

        # ------------------------------------------------------------------ createOrder
        def create(item_value: tuple, pickup_deadline: int = 0, device_id: int = 0) -> Any:
            return sales.createOrder(item_value, PRICE_WEI, pickup_deadline, device_id, sender=seller)

        first_receipt = create(item(0))
        rec.add(
            "order",
            "createOrder.first_ever",
            "createOrder (first order on the contract)",
            [gas_of(first_receipt)],
            "registers the item type; order counter 0 -> 1",
        )
        # 2 * reps + 1 orders: release measures reps of them with the seller's credit pending and reps + 1 with
        # a credit of 0 (see below); their createOrder and buy figures are all alike.
        plain_orders, known_gas = [], []
        for i in range(2 * reps + 1):
            receipt = create(item(i + 1))
            known_gas.append(gas_of(receipt))
            plain_orders.append(sales.lastOrderId())
        rec.add(
            "order",
            "createOrder.known_type",
            "createOrder (known item type, no deadline)",
            known_gas,
            "like-for-like with the paper: Toyota Camry 2018, a new VIN each time",
        )
        new_type_gas = [gas_of(create(item(100 + i, year=2010 + i))) for i in range(reps)]
        rec.add(
            "order",
            "createOrder.new_type",
            "createOrder (first order of a new item type)",
            new_type_gas,
            "Toyota Camry of a year not seen before, each time",
        )
        deadline_gas = [gas_of(create(item(200 + i), pickup_deadline=now() + 7 * 24 * ONE_HOUR)) for i in range(reps)]
        rec.add(
            "order",
            "createOrder.with_deadline",
            "createOrder (known type, pickup deadline)",
            deadline_gas,
            "7-day pickup deadline: writes the order's second slot",
        )
        registry.setApprovalForAll(sales, True, sender=seller)
        device_orders, device_order_gas = [], []
        for device_id in seller_devices[:-1]:  # the last one stays with the seller
            record = records[device_ids.index(device_id)]
            receipt = create((DEVICE_ITEM_MAKE, DEVICE_MODEL, 2025, record["serial"]), device_id=device_id)
            device_order_gas.append(gas_of(receipt))
            device_orders.append(sales.lastOrderId())
        rec.add(
            "order",
            "createOrder.device_item",
            "createOrder (device item, token into escrow)",
            device_order_gas[1:],
            f"known type, escrow already holds a device; the first one ({device_order_gas[0]:,}: new type, "
            "escrow balance 0 -> 1) excluded",
        )

        # ------------------------------------------------------------------ buy
        buy_gas = [gas_of(sales.buy(order_id, value=PRICE_WEI, sender=buyer)) for order_id in plain_orders]
        rec.add("order", "buy", "buy", buy_gas, "orders of createOrder (known type); the price is held in escrow")
        # The last device order stays listed, so the escrow never empties.
        device_buy_gas = []
        for order_id in device_orders[:-1]:
            receipt = sales.buy(order_id, value=PRICE_WEI, sender=buyer)
            device_buy_gas.append(gas_of(receipt))
            if registry.ownerOf(sales.getOrder(order_id).deviceId) != sales.address:
                raise RuntimeError(f"buy of device order {order_id} moved the token out of escrow")
        rec.add(
            "order",
            "buy.device_item",
            "buy (device item, token stays in escrow)",
            device_buy_gas,
            "no token transfer: the device stays with SalesOrder until release, so a buyer who can still refund "
            "never holds it; same storage writes as buy",
        )

        # ------------------------------------------------------------------ release and withdraw
        use_action_signature = registry.contract_type.mutable_methods["useDeviceAction"].selector
        use_action_selector = "0x" + keccak(text=use_action_signature)[:4].hex()
        transfer_from_selector = "0x" + keccak(text="transferFrom(address,address,uint256)")[:4].hex()
        inner_action_gas: list[int] = []
        last_release_hash: list[str] = [""]

        def frame_gas(txn_hash: str, selector: str) -> int | None:
            """Gas used inside the (one) call frame of ``selector`` in the transaction, from anvil's callTracer."""
            try:
                trace = provider.make_request("debug_traceTransaction", [txn_hash, {"tracer": "callTracer"}])
            except Exception:  # noqa: BLE001 - the row is context; leave it out when tracing is unavailable
                return None
            frames = list(trace.get("calls") or [])
            while frames:
                frame = frames.pop()
                if frame.get("input", "")[:10].lower() == selector[:10].lower():
                    return int(frame["gasUsed"], 16)
                frames.extend(frame.get("calls") or [])
            return None

        def inner_frame_gas(txn_hash: str) -> int | None:
            """Gas used inside SalesOrder's call of useDeviceAction."""
            return frame_gas(txn_hash, use_action_selector)

        buyer_key = Account.from_key(buyer.private_key)

        def buyer_consent(order_id: int) -> tuple[bytes, int, bytes]:
            """The buyer's answer to the gate's pickup challenge (ISalesOrder.BuyerConsent), as a real
            pickup produces it: a random-looking 32-byte challenge, two minutes to answer, the buyer key's
            EIP-712 signature in SalesOrder's domain."""
            challenge = keccak(text=f"thingledger bench pickup challenge {order_id}")
            expires_at = now() + 120
            message = typed_data.pickup_challenge_message(
                chain_id, sales.address, order_id, release_gate, challenge, expires_at
            )
            signature = bytes(Account.sign_typed_data(buyer_key.key, full_message=message).signature)
            return (challenge, expires_at, signature)

        def release(order_id: int) -> int:
            deadline = now() + ONE_HOUR
            action = typed_data.release_action_hash(order_id, buyer.address)
            signature = device_signature(release_gate, key_by_id[release_gate], sales.address, action, deadline)
            consent = buyer_consent(order_id)
            receipt = sales.release(order_id, release_gate, deadline, signature, consent, sender=relayer)
            last_release_hash[0] = receipt.txn_hash
            inner = inner_frame_gas(receipt.txn_hash)
            if inner is not None:
                inner_action_gas.append(inner)
            return gas_of(receipt)

        release_from_zero, withdraw_gas = [], []
        release_from_zero.append(release(plain_orders[0]))
        release_pending = [release(order_id) for order_id in plain_orders[1 : reps + 1]]
        withdraw_gas.append(gas_of(sales.withdraw(sender=seller)))
        for order_id in plain_orders[reps + 1 :]:
            release_from_zero.append(release(order_id))
            withdraw_gas.append(gas_of(sales.withdraw(sender=seller)))
        # Device items: release also moves the token from escrow to the buyer (escrow balance n -> n - 1, it
        # keeps the still-listed device; buyer balance 0 -> 1 the first time, then n -> n + 1; a new ownership
        # epoch). The seller withdraws after each, as for "release (seller's credit was 0)", so the difference
        # between the two rows is the token transfer.
        release_device_gas = []
        transfer_frame_gas: list[int] = []
        for order_id in device_orders[:-1]:
            receipt_gas = release(order_id)
            receipt_hash = last_release_hash[0]
            device_id = sales.getOrder(order_id).deviceId
            if registry.ownerOf(device_id) != buyer.address:
                raise RuntimeError(f"release of device order {order_id} did not hand the token to the buyer")
            release_device_gas.append(receipt_gas)
            inner = frame_gas(receipt_hash, transfer_from_selector)
            if inner is not None:
                transfer_frame_gas.append(inner)
            withdraw_gas.append(gas_of(sales.withdraw(sender=seller)))
        rec.add(
            "order",
            "release",
            "release (gate device + buyer consent, seller admitted)",
            release_pending,
            "seller already has unwithdrawn credit; includes the buyer's consent check and the gate's "
            "useDeviceAction",
        )
        rec.add(
            "order",
            "release.empty_credit",
            "release (seller's credit was 0)",
            release_from_zero,
            "seller withdrew after each sale: credit slot zero -> non-zero",
        )
        if inner_action_gas:
            rec.add(
                "order",
                "useDeviceAction.in_release",
                "  of which useDeviceAction (registry call frame)",
                inner_action_gas,
                "inside the registry's frame, every release (callTracer); the device slot is already warm "
                "from hasPermission",
            )
        rec.add(
            "order",
            "release.device_item",
            "release (device item, token to the buyer)",
            release_device_gas[1:],
            "as 'release (seller's credit was 0)', plus the token's transfer from escrow to a buyer who already "
            f"holds a device; the first one ({release_device_gas[0]:,}: buyer balance 0 -> 1) excluded",
        )
        if transfer_frame_gas:
            rec.add(
                "order",
                "transferFrom.in_release",
                "  of which transferFrom (registry call frame)",
                transfer_frame_gas[1:],
                "inside the registry's frame, device releases but the first (callTracer)",
            )
        rec.add("order", "withdraw", "withdraw", withdraw_gas, "whole credit to the seller (EOA)")

        # ------------------------------------------------------------------ the paper's per-order contract
        paper_gas, paper_buy_gas = [], []
        for _ in range(reps):
            paper = seller.deploy(baselines["PaperSalesOrder"], ITEM_MAKE, ITEM_MODEL, ITEM_YEAR, PRICE_WEI)
            paper_gas.append(gas_of(receipt_of(paper)))
            paper_buy_gas.append(gas_of(paper.buy(value=PRICE_WEI, sender=buyer)))
        rec.add(
            "baseline",
            "baseline.paper.deploy",
            "PaperSalesOrder deployment (one per order)",
            paper_gas,
            "same item: Toyota Camry 2018 (the paper stores no serial)",
        )
        rec.add(
            "baseline",
            "baseline.paper.buy",
            "PaperSalesOrder.buy",
            paper_buy_gas,
            "pays the seller at once (no escrow, no release)",
        )

        # ------------------------------------------------------------------ ServiceMarket (last: changes no row above)
        measure_market(
            rec,
            reps,
            market_type=project.ServiceMarket,
            registry=registry,
            accounts_=(admin, manufacturer, relayer, *accounts.test_accounts[6:8]),
            now=now,
            device_signature=device_signature,
            typed_data=typed_data,
            receipt_of=receipt_of,
        )

    targets = []
    for name, numerator, denominator, limit, limit_text in TARGETS:
        ratio = rec.gas(numerator) / rec.gas(denominator)
        targets.append(
            {
                "target": name,
                "numerator": numerator,
                "denominator": denominator,
                "numerator_gas": rec.gas(numerator),
                "denominator_gas": rec.gas(denominator),
                "ratio": round(ratio, 4),
                "limit": limit,
                "limit_text": limit_text,
                "pass": ratio <= limit,
            }
        )

    return {
        "meta": {
            "network": NETWORK,
            "client": client,
            "hardfork": hardfork,
            "chain_id": chain_id,
            "solc_version": compiler["solc_version"],
            "compiler_settings": compiler["settings"],
            "repetitions": reps,
            "gas": "receipt gasUsed: whole transaction, 21,000 intrinsic and calldata included",
            "seconds": round(time.monotonic() - started, 1),
        },
        "figures": {
            key: {
                "label": fig.label,
                "section": fig.section,
                "gas": fig.gas,
                "method": fig.method,
                "samples": fig.samples,
                "note": fig.note,
            }
            for key, fig in rec.figures.items()
        },
        "targets": targets,
    }


# ---------------------------------------------------------------------------------------------- ServiceMarket

MARKET_SERVICE = "repair:infusion-pump"
MARKET_EMPTY_SERVICE = "calibration:infusion-pump"  # no offer until the matchRequest rows
OFFER_PRICE_WEI = 30_000_000 * 10**9  # 0.03 ether per unit (an hour of work), a little more for each new offer
MAX_PRICE_WEI = 50_000_000 * 10**9  # the requests' maximum: 0.05 ether per unit
OFFER_UNITS = 1_000
REQUEST_UNITS = 2


def measure_market(
    rec: Recorder,
    reps: int,
    *,
    market_type: Any,
    registry: Any,
    accounts_: tuple[Any, ...],
    now: Any,
    device_signature: Any,
    typed_data: Any,
    receipt_of: Any,
) -> None:
    """ServiceMarket rows. Fresh supplier devices (owned by `supplier`) publish offers of one service type at
    rising prices, so each new offer is the newest and the dearest (a price hint of the previous offer is
    exact). Requests use LatestPublished, so a match looks at one offer; bench/gas_market_matching.py measures
    longer walks and large markets. No protocol fee is set (as deployed)."""
    from ape import chain
    from eth_account import Account
    from eth_utils import keccak

    admin, manufacturer, relayer, supplier, demander = accounts_
    market = admin.deploy(market_type, registry, admin)
    rec.add("deploy", "deploy.ServiceMarket", "deploy ServiceMarket", [gas_of(receipt_of(market))], "once per chain")
    chain_id = chain.chain_id
    service, empty_service = keccak(text=MARKET_SERVICE), keccak(text=MARKET_EMPTY_SERVICE)
    attester = key_account("attester", 0)

    # Devices 0 (the type's first offer), 1..reps (owner path), reps+1..2*reps (device-signed); the last one
    # also republishes, and the declines take the newest offers back.
    keys = [key_account("market supplier", i) for i in range(2 * reps + 1)]
    for i, key in enumerate(keys):
        record = manufacturing_record(1000 + i)
        deadline = now() + ONE_HOUR
        message = typed_data.provision_message(chain_id, registry.address, key.address, manufacturer.address, record,
                                               deadline)
        signature = Account.sign_typed_data(key.key, full_message=message).signature
        registry.provision(key.address, typed_data.record_tuple(record), deadline, signature, sender=manufacturer)
        registry.transferFrom(manufacturer, supplier, int(key.address, 16), sender=manufacturer)
        registry.activate(int(key.address, 16), sender=supplier)
    device_ids = [int(key.address, 16) for key in keys]
    published = [0]

    def publish(index: int, service_type: bytes = service, signed: bool = False) -> int:
        device_id = device_ids[index]
        published[0] += 1
        price = OFFER_PRICE_WEI + published[0] * 10**9
        valid_until = now() + 7 * 24 * ONE_HOUR
        uri = metadata_uri(f"offer {published[0]}")
        market_state = market.marketOf(service_type)
        hint = market_state.dearest  # every new price is the highest so far
        terms = (service_type, price, OFFER_UNITS, valid_until, uri)
        if signed:
            deadline = now() + ONE_HOUR
            action = typed_data.publish_offer_action_hash(service_type, price, OFFER_UNITS, valid_until, uri)
            auth = (deadline, device_signature(device_id, keys[index], market.address, action, deadline))
            return gas_of(market.publishOffer(device_id, terms, hint, auth, sender=relayer))
        return gas_of(market.publishOffer(device_id, terms, hint, (0, b""), sender=supplier))

    def post(service_type: bytes = service) -> tuple[int, int]:
        terms = (service_type, REQUEST_UNITS, MAX_PRICE_WEI, now() + 3 * 24 * ONE_HOUR, 0, attester.address)
        receipt = market.postRequest(terms, value=MAX_PRICE_WEI * REQUEST_UNITS, sender=demander)
        return gas_of(receipt), market.lastRequestId()

    def evidence(request_id: int) -> bytes:
        return keccak(text=f'{{"request":{request_id},"flow_ml_h":125.0,"set_ml_h":125.0,"occlusion_alarm":false}}')

    # ------------------------------------------------------------------ offers
    first_gas = publish(0)
    rec.add("market", "market.publishOffer.first_of_type", "publishOffer (first offer of a service type)",
            [first_gas], "owner path; the service type's list ends go zero -> non-zero")
    rec.add("market", "market.publishOffer.owner", "publishOffer (owner path)",
            [publish(i) for i in range(1, reps + 1)],
            "a device's first offer of the type, appended as the newest and dearest; the owner calls")
    rec.add("market", "market.publishOffer.device_signed", "publishOffer (device-signed, relayer submits)",
            [publish(i, signed=True) for i in range(reps + 1, 2 * reps + 1)],
            "as the owner path, with the device's DeviceAction signature checked by the registry (nonce used)")
    rec.add("market", "market.publishOffer.replace", "publishOffer (replaces the device's listed offer)",
            [publish(2 * reps) for _ in range(reps)],
            "owner path; the device's newest offer is withdrawn and the new one appended in its place")

    # ------------------------------------------------------------------ requests
    # The first request moves the request counter 0 -> 1; excluded.
    first_empty_gas, first_request = post(empty_service)
    empty_gas, open_requests = [], []
    for _ in range(reps):
        gas, request_id = post(empty_service)
        empty_gas.append(gas)
        open_requests.append(request_id)
    rec.add("market", "market.postRequest.no_offer", "postRequest (no offer found)", empty_gas,
            f"escrow taken, walk finds an empty list, request stays Open; the very first ({first_empty_gas:,}: "
            "request counter 0 -> 1) excluded")
    # The first match credits the demander's refund to a zero slot; excluded.
    first_match_gas, _ = post()
    matched_gas, matched = [], []
    for _ in range(3 * reps + 1):
        gas, request_id = post()
        matched_gas.append(gas)
        matched.append(request_id)
    rec.add("market", "market.postRequest.match", "postRequest + match (LatestPublished, 1 offer looked at)",
            matched_gas,
            "takes 2 units of the newest offer; the price difference goes to the demander's (non-zero) credit; "
            f"the first ({first_match_gas:,}: credit 0 -> non-zero) excluded")
    publish(0, service_type=empty_service)
    match_gas = [gas_of(market.matchRequest(request_id, sender=relayer)) for request_id in open_requests]
    if any(market.getRequest(request_id).status != 2 for request_id in open_requests):
        raise RuntimeError("matchRequest left a request unmatched")
    rec.add("market", "market.matchRequest", "matchRequest (an Open request, 1 offer looked at)", match_gas,
            "anyone calls it once an offer arrived; the demander's credit was non-zero")

    # ------------------------------------------------------------------ completion and withdraw
    market.confirmCompletion(matched[0], evidence(matched[0]), sender=demander)  # payee credit 0 -> non-zero
    rec.add("market", "market.confirmCompletion", "confirmCompletion (by the demander)",
            [gas_of(market.confirmCompletion(rid, evidence(rid), sender=demander)) for rid in matched[1 : reps + 1]],
            "agreed price to the payee's (non-zero) credit; no protocol fee set")
    attested_gas = []
    for request_id in matched[reps + 1 : 2 * reps + 1]:
        request = market.getRequest(request_id)
        message = typed_data.completion_message(chain_id, market.address, request_id, request.offerId, request.round,
                                                evidence(request_id))
        signature = Account.sign_typed_data(attester.key, full_message=message).signature
        attested_gas.append(gas_of(market.completeWithAttestation(request_id, evidence(request_id), signature,
                                                                  sender=supplier)))
    rec.add("market", "market.completeWithAttestation", "completeWithAttestation (attester's EIP-712 signature)",
            attested_gas, "the supplier submits the attester's (EOA) Completion statement; payee's credit non-zero")
    withdraw_gas = []
    for request_id in matched[2 * reps + 1 :]:
        market.confirmCompletion(request_id, evidence(request_id), sender=demander)
        withdraw_gas.append(gas_of(market.withdraw(sender=supplier)))
    rec.add("market", "market.withdraw", "withdraw", withdraw_gas,
            "the supplier company (EOA) takes its whole credit after each completion")

    # ------------------------------------------------------------------ decline
    decline_gas = []
    for _ in range(reps):
        _, request_id = post()
        request = market.getRequest(request_id)
        index = device_ids.index(market.getOffer(request.offerId).deviceId)
        deadline = now() + ONE_HOUR
        action = typed_data.decline_agreement_action_hash(request_id, request.round)
        signature = device_signature(device_ids[index], keys[index], market.address, action, deadline)
        decline_gas.append(gas_of(market.declineAgreement(request_id, (deadline, signature), sender=relayer)))
    rec.add("market", "market.declineAgreement.device_signed", "declineAgreement (device-signed, relayer submits)",
            decline_gas,
            "request back to Open; the declining offer (the newest, each time another device's) leaves the lists")


# ---------------------------------------------------------------------------------------------- output

SECTIONS = (
    ("device", "DeviceRegistry"),
    ("order", "SalesOrder"),
    ("market", "ServiceMarket"),
    ("baseline", "Baselines"),
    ("deploy", "Deployments (context)"),
)


def print_tables(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = bench_cli.console()
    meta = result["meta"]
    optimizer = meta["compiler_settings"].get("optimizer", {})
    table = Table(
        title="thingledger gas (receipt gasUsed, whole transaction)",
        caption=(
            f"solc {meta['solc_version']}, optimizer {'on' if optimizer.get('enabled') else 'off'} "
            f"({optimizer.get('runs')} runs), evm {meta['compiler_settings'].get('evmVersion', 'default')}; "
            f"{meta['client']}, hardfork {meta['hardfork']}; {meta['seconds']} s"
        ),
    )
    table.add_column("operation")
    table.add_column("gas", justify="right")
    table.add_column("note")
    for section, title in SECTIONS:
        rows = [f for f in result["figures"].values() if f["section"] == section]
        if not rows:
            continue
        table.add_section()
        table.add_row(f"[bold]{title}[/bold]", "", "")
        for fig in rows:
            table.add_row(fig["label"], f"{fig['gas']:,}", f"{fig['note']} [dim]({fig['method']})[/dim]")
    console.print(table)

    targets = bench_cli.targets_table()
    for t in result["targets"]:
        is_percent = t["limit"] < 1
        ratio = f"{t['ratio'] * 100:.1f}%" if is_percent else f"{t['ratio']:.2f}x"
        verdict = "[green]PASS[/green]" if t["pass"] else "[red]MISS[/red]"
        figures = f"{t['numerator_gas']:,} / {t['denominator_gas']:,}"
        targets.add_row(t["target"], figures, ratio, t["limit_text"], verdict)
    console.print(targets)


def main(argv: list[str] | None = None) -> int:
    return bench_cli.main(
        argv,
        prog="gas_foundation.py",
        description="Print the gas of thingledger's operations and of the baselines, measured on a local chain.",
        reps_default=7,
        reps_help="repetitions behind each steady-state median (3-25, default 7)",
        run=run_benchmark,
        print_tables=print_tables,
    )


if __name__ == "__main__":
    sys.exit(main())

"""Matching gas of ServiceMarket per policy, with 10, 100, 1,000 and 10,000 open offers of one service type.

    python bench/gas_market_matching.py            # tables (rich)
    python bench/gas_market_matching.py --json     # one JSON object with every figure

Starts its own anvil through Ape's foundry provider, deploys DeviceRegistry and ServiceMarket from the Ape
project, and builds one market incrementally (10 -> 100 -> 1,000 -> 10,000 offers). A device lists at most one
offer per service type, so every offer has its own supplier device: the manufacturer provisions it (with the
device's own EIP-712 signature), keeps it, activates it and publishes its offer through the owner path. These
three transactions per offer go out as raw `eth_sendTransaction`s (anvil's accounts are unlocked) in JSON-RPC
batches, with automine off and the block gas limit raised, so that a block holds thousands of them; each price
hint is the exact place, computed here from a model of the price list. At every size the script posts, from
one demander, requests of each policy that match, and reads `gas_used` from their receipts: whole-transaction
gas of `postRequest`, the match included.

Three offers in every ten (by publication index i, 1-based) are ones the request cannot take:
  i % 10 == 0: priced above the request's maximum;  i % 10 in (1, 9): 1 unit left, the request needs 2.
Offers 1..10 have prices falling with i; every later offer is dearer than all of them (and cheaper than the
maximum, unless i % 10 == 0). Every size is a multiple of ten, so the front of every list is alike at every
size: LatestPublished sees N (too dear), N-1 (1 unit), takes N-2; LowestPrice sees 9 (1 unit), takes 8;
EarliestPublished sees 1 (1 unit), takes 2. Takeable offers hold 1,000 units, so no measurement runs one out.
A warm-up request first makes the demander's credit slot and the request counter non-zero, so every measured
request writes storage the same way. The script checks each match against the documented walk.

Anvil runs without `--steps-tracing` (which Ape's provider passes, and which makes mining the bulk blocks
about 70 times slower); no figure here reads a trace, and gas does not depend on tracing.

A target MISS is a finding, not a failure: the exit status is 0 whenever the benchmark ran, 1 when it could
not run, 2 on bad usage. See bench/README.md.
"""

from __future__ import annotations

import bisect
import statistics
import sys
import time
from typing import Any

import bench_cli

NETWORK = "ethereum:local:foundry"

SIZES = (10, 100, 1_000, 10_000)
POLICIES = ("LatestPublished", "LowestPrice", "EarliestPublished")
TARGET_RATIO = 1.1  # the 10,000-offer figure may be at most 1.1x the 10-offer figure, for every policy

SERVICE_NAME = "repair:infusion-pump"
EMPTY_SERVICE_NAME = "repair:ventilator"  # no offers at all: postRequest with nothing to match
GWEI = 10**9
MAX_PRICE = 1_000_000 * GWEI  # the requests' maximum unit price, 0.001 ether
BASE_PRICE = MAX_PRICE // 2
REQUEST_UNITS = 2
OFFER_UNITS = 1_000  # takeable offers: plenty for every measurement
FEW_UNITS = 1  # fewer than REQUEST_UNITS
GAS = {"provision": 300_000, "activate": 100_000, "publishOffer": 400_000}  # per-transaction limits, bulk
BATCH = 500  # JSON-RPC requests per HTTP call
CHUNK = 1_000  # devices per mined block
ONE_DAY = 86_400
DEVICE_MODEL = "FieldKit-5"
FIRMWARE_VERSION = "FieldKit-5 firmware 1.2"
MANUFACTURED_AT = 1741910400  # 2025-03-14T00:00:00Z
WARRANTY_END = 1804982400  # 2027-03-14T00:00:00Z
PROVISION_DEADLINE = 2**40  # far ahead, so that the signatures never depend on the chain's clock
METADATA_URI = "ipfs://QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG/offer"
RECORD_TYPE = (
    "ManufacturingRecord(string model,string serial,bytes32 firmwareHash,uint64 manufacturedAt,"
    "uint64 warrantyEnd,string metadataURI)"
)
PROVISION_TYPE = (
    "Provision(address key,address manufacturer,ManufacturingRecord record,uint256 nonce,uint256 deadline)"
    + RECORD_TYPE
)


# ---------------------------------------------------------------------------------------------- the offers


def offer_terms(i: int) -> tuple[int, int]:
    """(unit price, units) of the i-th offer published (1-based); see the module documentation."""
    r = i % 10
    if r == 0:
        return 3 * MAX_PRICE + i * GWEI, OFFER_UNITS  # above the maximum
    price = BASE_PRICE + (10 - i) * GWEI if i <= 10 else BASE_PRICE + (10 + i) * GWEI
    return price, FEW_UNITS if r in (1, 9) else OFFER_UNITS


def takeable(i: int) -> bool:
    price, units = offer_terms(i)
    return price <= MAX_PRICE and units >= REQUEST_UNITS


def expected_walk(policy: int, size: int) -> list[int]:
    """The offers the policy's walk looks at, up to and including the one it takes (ids = publication index)."""
    if policy == 0:
        order = range(size, 0, -1)
    elif policy == 2:
        order = range(1, size + 1)
    else:
        order = sorted(range(1, size + 1), key=lambda i: (offer_terms(i)[0], i))
    walk = []
    for i in order:
        walk.append(i)
        if takeable(i):
            return walk
        if policy == 1 and offer_terms(i)[0] > MAX_PRICE:
            break
    raise RuntimeError(f"no takeable offer for policy {POLICIES[policy]} at size {size}")


def describe_walk(walk: list[int]) -> str:
    parts = []
    for i in walk[:-1]:
        price, units = offer_terms(i)
        parts.append(f"#{i} {'above max' if price > MAX_PRICE else f'{units} unit'}")
    return ", ".join(parts + [f"#{walk[-1]} taken"])


class PriceModel:
    """The market's price list, kept here so that every publish gets its exact hint (0 steps in the contract)."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []  # (price, offer id), in list order

    def hint_and_insert(self, price: int, offer_id: int) -> int:
        # After every offer of a price at or below this one (equal prices keep publication order).
        place = bisect.bisect_right(self.keys, (price, float("inf")))
        hint = self.keys[place - 1][1] if place else 0
        self.keys.insert(place, (price, offer_id))
        return hint


# ---------------------------------------------------------------------------------------------- the run


def anvil_without_step_traces() -> None:
    """Drop `--steps-tracing` from the anvil command line of Ape's foundry provider (see the module docstring)."""
    from ape_foundry.provider import FoundryProvider

    build_command = FoundryProvider.build_command

    def without_step_traces(self: Any) -> list[str]:
        return [arg for arg in build_command(self) if arg != "--steps-tracing"]

    FoundryProvider.build_command = without_step_traces


class Devices:
    """Supplier device keys and their Provision signatures, made here (eth_keys) rather than through
    eth-account's typed-data encoder: 10,000 of them are the slowest part of the run. The first one is checked
    against thingledger_device.typed_data, the module the device client signs with."""

    def __init__(self, chain_id: int, registry: str, manufacturer: str, typed_data: Any) -> None:
        from eth_abi import encode as abi_encode
        from eth_utils import keccak, to_checksum_address

        self.abi_encode, self.keccak = abi_encode, keccak
        self.manufacturer = to_checksum_address(manufacturer)
        domain_type = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        self.domain_separator = keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [domain_type, keccak(text=typed_data.REGISTRY_DOMAIN_NAME), keccak(text=typed_data.DOMAIN_VERSION),
                 chain_id, to_checksum_address(registry)],
            )
        )
        self.typed_data, self.chain_id, self.registry = typed_data, chain_id, registry
        self.checked = False

    @staticmethod
    def record(index: int) -> dict[str, Any]:
        from eth_utils import keccak

        return {"model": DEVICE_MODEL, "serial": f"FK5-2503-{index:06d}", "firmwareHash": keccak(text=FIRMWARE_VERSION),
                "manufacturedAt": MANUFACTURED_AT, "warrantyEnd": WARRANTY_END, "metadataURI": METADATA_URI}

    def make(self, index: int) -> tuple[str, dict[str, Any], bytes]:
        """(device key address, manufacturing record, Provision signature) of supplier device `index`."""
        from eth_keys import keys

        abi_encode, keccak = self.abi_encode, self.keccak
        private_key = keys.PrivateKey(keccak(text=f"thingledger bench market supplier {index}"))
        address = private_key.public_key.to_checksum_address()
        record = self.record(index)
        record_hash = keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "bytes32", "uint64", "uint64", "bytes32"],
                [keccak(text=RECORD_TYPE), keccak(text=record["model"]), keccak(text=record["serial"]),
                 record["firmwareHash"], record["manufacturedAt"], record["warrantyEnd"],
                 keccak(text=record["metadataURI"])],
            )
        )
        struct_hash = keccak(
            abi_encode(
                ["bytes32", "address", "address", "bytes32", "uint256", "uint256"],
                [keccak(text=PROVISION_TYPE), address, self.manufacturer, record_hash, 0, PROVISION_DEADLINE],
            )
        )
        signed = private_key.sign_msg_hash(keccak(b"\x19\x01" + self.domain_separator + struct_hash))
        signature = signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([27 + signed.v])
        if not self.checked:
            from eth_account import Account

            message = self.typed_data.provision_message(
                self.chain_id, self.registry, address, self.manufacturer, record, PROVISION_DEADLINE
            )
            expected = bytes(Account.sign_typed_data(private_key.to_bytes(), full_message=message).signature)
            if expected != signature:
                raise RuntimeError("the bench's Provision signature differs from thingledger_device.typed_data's")
            self.checked = True
        return address, record, signature


def run_benchmark(reps: int) -> dict[str, Any]:
    import requests
    from ape import accounts, chain, networks, project
    from ape.logging import logger
    from eth_abi import encode as abi_encode
    from eth_utils import keccak

    typed_data = bench_cli.device_typed_data()
    logger.set_level("ERROR")
    started = time.monotonic()
    anvil_without_step_traces()
    registry_type, market_type = project.DeviceRegistry, project.ServiceMarket
    service_type = keccak(text=SERVICE_NAME)
    empty_service_type = keccak(text=EMPTY_SERVICE_NAME)

    with networks.parse_network_choice(NETWORK) as provider:
        chain_id = chain.chain_id
        client = provider.web3.client_version
        admin, manufacturer, demander = accounts.test_accounts[:3]
        session = requests.Session()
        rpc_id = [0]

        def rpc_batch(calls: list[tuple[str, list[Any]]]) -> list[Any]:
            payload = []
            for method, params in calls:
                rpc_id[0] += 1
                payload.append({"jsonrpc": "2.0", "id": rpc_id[0], "method": method, "params": params})
            replies = session.post(provider.http_uri, json=payload, timeout=600).json()
            errors = [reply["error"] for reply in replies if "error" in reply]
            if errors:
                raise RuntimeError(f"{len(errors)} of {len(calls)} JSON-RPC calls failed, first: {errors[0]}")
            return [reply["result"] for reply in sorted(replies, key=lambda reply: reply["id"])]

        def now() -> int:
            return int(chain.pending_timestamp)

        registry = admin.deploy(registry_type, admin)
        market = admin.deploy(market_type, registry, admin)
        registry.grantRole(registry.MANUFACTURER_ROLE(), manufacturer, sender=admin)
        devices = Devices(chain_id, registry.address, manufacturer.address, typed_data)

        # ------------------------------------------------------------------ bulk: provision, activate, publish
        def selector(contract: Any, name: str) -> bytes:
            return keccak(text=contract.contract_type.mutable_methods[name].selector)[:4]

        provision_selector = selector(registry, "provision")
        activate_selector = selector(registry, "activate")
        publish_selector = selector(market, "publishOffer")
        prices = PriceModel()
        published = [0]
        seconds = {"devices (keys, signatures)": 0.0, "send": 0.0, "mine": 0.0}
        gas_limit = int(chain.blocks.head.gas_limit)

        def mine_chunk(first: int, last: int, valid_until: int) -> None:
            """Provisions, activates and publishes the offers of devices first..last in one block."""
            t0 = time.monotonic()
            calls: list[tuple[str, bytes, int]] = []  # (to, data, gas), in nonce order
            for i in range(first, last + 1):
                key, record, signature = devices.make(i)
                calls.append((registry.address, provision_selector + abi_encode(
                    ["address", "(string,string,bytes32,uint64,uint64,string)", "uint256", "bytes"],
                    [key, typed_data.record_tuple(record), PROVISION_DEADLINE, signature]), GAS["provision"]))
                calls.append((registry.address, activate_selector + abi_encode(["uint256"], [int(key, 16)]),
                              GAS["activate"]))
                price, units = offer_terms(i)
                calls.append((market.address, publish_selector + abi_encode(
                    ["uint256", "(bytes32,uint256,uint256,uint256,string)", "uint256", "(uint256,bytes)"],
                    [int(key, 16), (service_type, price, units, valid_until, METADATA_URI),
                     prices.hint_and_insert(price, i), (0, b"")]), GAS["publishOffer"]))
            seconds["devices (keys, signatures)"] += time.monotonic() - t0
            t0 = time.monotonic()
            nonce = provider.web3.eth.get_transaction_count(manufacturer.address)
            txs = [{"from": manufacturer.address, "to": to, "data": "0x" + data.hex(), "gas": hex(gas),
                    "gasPrice": hex(GWEI), "nonce": hex(nonce + n)} for n, (to, data, gas) in enumerate(calls)]
            for start in range(0, len(txs), BATCH):
                rpc_batch([("eth_sendTransaction", [tx]) for tx in txs[start : start + BATCH]])
            seconds["send"] += time.monotonic() - t0
            t0 = time.monotonic()
            provider.make_request("evm_setBlockGasLimit", [hex(max(gas_limit, sum(gas for *_, gas in calls)))])
            provider.make_request("evm_mine", [])
            seconds["mine"] += time.monotonic() - t0

        def publish_up_to(size: int) -> None:
            valid_until = now() + 20 * ONE_DAY  # ServiceMarket takes at most 30 days
            provider.make_request("evm_setAutomine", [False])
            try:
                for first in range(published[0] + 1, size + 1, CHUNK):
                    mine_chunk(first, min(first + CHUNK - 1, size), valid_until)
            finally:
                provider.make_request("evm_setBlockGasLimit", [hex(gas_limit)])
                provider.make_request("evm_setAutomine", [True])
                # An empty block with the usual limit: Ape takes its transactions' gas limit from the latest block.
                provider.make_request("evm_mine", [])
            published[0] = size
            market_state = market.marketOf(service_type)
            if market.lastOfferId() != size or market_state.listed != size:
                raise RuntimeError(
                    f"bulk publishing left {market_state.listed} offers listed of {size} (some transactions failed)"
                )

        # ------------------------------------------------------------------ measuring
        def post(policy: int, units: int = REQUEST_UNITS, kind: bytes = service_type) -> tuple[int, int]:
            terms = (kind, units, MAX_PRICE, now() + ONE_DAY, policy, "0x" + "00" * 20)
            receipt = market.postRequest(terms, value=MAX_PRICE * units, sender=demander)
            if receipt.failed:
                raise RuntimeError(f"postRequest failed: {receipt.txn_hash}")
            return int(receipt.gas_used), market.getRequest(market.lastRequestId()).offerId

        # Figures by policy, then by size (a string, as in the JSON).
        matched: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in POLICIES}
        no_match: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in POLICIES}
        empty: dict[int, list[int]] = {}
        for size in SIZES:
            publish_up_to(size)
            if size == SIZES[0]:
                post(0)  # warm-up: the demander's credit and the request counter become non-zero
            for policy, name in enumerate(POLICIES):
                walk = expected_walk(policy, size)
                listed, _ = market.listOffers(service_type, policy, 0, 16)
                if list(listed[: len(walk)]) != walk:
                    raise RuntimeError(f"{name} at {size}: the list starts {list(listed[:len(walk)])}, expected {walk}")
                samples = []
                for _ in range(reps):
                    gas, offer_id = post(policy)
                    if offer_id != walk[-1]:
                        raise RuntimeError(f"{name} at {size} offers matched offer {offer_id}, expected {walk[-1]}")
                    samples.append(gas)
                matched[name][str(size)] = {"gas": int(statistics.median(samples)), "samples": samples,
                                            "steps": len(walk), "offer": walk[-1], "walk": describe_walk(walk)}
                # No match: a request no offer can take (more units than any offer holds) walks to the end of the
                # list or to MAX_MATCH_STEPS; it stays Open.
                gas, offer_id = post(policy, units=OFFER_UNITS + 1)
                if offer_id != 0:
                    raise RuntimeError(f"{name} at {size}: a request for {OFFER_UNITS + 1} units matched {offer_id}")
                no_match[name][str(size)] = {"gas": gas, "steps": min(size, 16)}
            empty[size] = [post(0, kind=empty_service_type)[0] for _ in range(reps)]

    empty_gas = int(statistics.median(sample for samples in empty.values() for sample in samples))
    targets = []
    for name in POLICIES:
        low, high = matched[name][str(SIZES[0])]["gas"], matched[name][str(SIZES[-1])]["gas"]
        ratio = high / low
        targets.append({"policy": name, "gas_10": low, "gas_10000": high, "ratio": round(ratio, 4),
                        "limit": TARGET_RATIO, "pass": ratio <= TARGET_RATIO})
    return {
        "meta": {
            "network": NETWORK,
            "client": client,
            "chain_id": chain_id,
            "sizes": list(SIZES),
            "repetitions": reps,
            "service_type": SERVICE_NAME,
            "request": {"units": REQUEST_UNITS, "max_unit_price_wei": MAX_PRICE},
            "untakeable_share": "3 in 10: i % 10 == 0 above the maximum, i % 10 in (1, 9) one unit",
            "suppliers": "one Active device per offer, owned by the manufacturer (owner path)",
            "gas": "receipt gasUsed of postRequest: whole transaction, 21,000 intrinsic and calldata included",
            "bulk_seconds": {phase: round(value, 1) for phase, value in seconds.items()},
            "seconds": round(time.monotonic() - started, 1),
        },
        "matched": matched,
        "no_match": no_match,
        "empty_market": {"gas": empty_gas, "samples": {str(size): samples for size, samples in empty.items()}},
        "targets": targets,
    }


# ---------------------------------------------------------------------------------------------- output


def print_tables(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = bench_cli.console()
    meta = result["meta"]
    empty_gas = result["empty_market"]["gas"]
    sizes = meta["sizes"]
    table = Table(
        title="ServiceMarket: gas of postRequest that matches (receipt gasUsed, whole transaction; median)",
        caption=(
            f"{meta['client']}; {meta['repetitions']} requests per figure; bulk "
            + ", ".join(f"{phase} {value} s" for phase, value in meta["bulk_seconds"].items())
            + f"; whole run {meta['seconds']} s"
        ),
    )
    table.add_column("policy")
    for size in sizes:
        table.add_column(f"{size:,} offers", justify="right")
    table.add_column(f"{sizes[-1]:,} / {sizes[0]:,}", justify="right")
    table.add_column("match (over nothing to match)", justify="right")
    table.add_column("walk at every size")
    for target in result["targets"]:
        name = target["policy"]
        row = result["matched"][name]
        cells = [f"{row[str(size)]['gas']:,}" for size in sizes]
        last = row[str(sizes[-1])]
        table.add_row(name, *cells, f"{target['ratio']:.3f}x", f"+{last['gas'] - empty_gas:,}",
                      f"{last['steps']} steps: {last['walk']}".replace(f"#{sizes[-1]}", "#N")
                      .replace(f"#{sizes[-1] - 1}", "#N-1").replace(f"#{sizes[-1] - 2}", "#N-2"))
    table.add_section()
    table.add_row("postRequest, nothing to match", *[f"{empty_gas:,}"] * len(sizes), "", "",
                  "a service type with no offers (median of all sizes)")
    for name in POLICIES:
        row = result["no_match"][name]
        cells = [f"{row[str(size)]['gas']:,}" for size in sizes]
        table.add_row(f"{name}, no offer takeable", *cells, "", "",
                      "walks min(N, 16) offers, none has enough units; stays Open")
    console.print(table)

    targets = bench_cli.targets_table()
    for t in result["targets"]:
        verdict = "[green]PASS[/green]" if t["pass"] else "[red]MISS[/red]"
        targets.add_row(f"{t['policy']}: 10,000 offers / 10 offers", f"{t['gas_10000']:,} / {t['gas_10']:,}",
                        f"{t['ratio']:.3f}x", f"<= {t['limit']}x", verdict)
    console.print(targets)


def main(argv: list[str] | None = None) -> int:
    return bench_cli.main(
        argv,
        prog="gas_market_matching.py",
        description="Print ServiceMarket's matching gas per policy as the number of open offers grows.",
        reps_default=5,
        reps_help="matched requests behind each median (3-25, default 5)",
        run=run_benchmark,
        print_tables=print_tables,
    )


if __name__ == "__main__":
    sys.exit(main())

"""Gas of CrossChainRelay.deliver for 1-of-1, 2-of-3, 3-of-3 and 5-of-7 validator sets, beside Hyperlane.

    python bench/gas_relay.py            # tables (rich)
    python bench/gas_relay.py --json     # one JSON object with every figure

Compiles the contracts through the Ape project and bench/baselines/NoopRecipient.sol with py-solc-x (the
project's solc settings, as gas_foundation.py does), starts two anvil chains (ids 1001 and 1002, through
thingledger_bridge.devnet), and for each validator set deploys a relay on each chain, trusted both ways, and a
do-nothing recipient on chain 1002. Every sample is a real message: `send` on chain 1001 (its gas is reported
too), signed by `threshold` validators in the destination relay's EIP-712 domain, then `deliver` on chain 1002
in its own transaction; each message is new, so its status slot goes zero -> non-zero and every slot the
delivery touches is cold. The figure is the receipt's gasUsed: the whole transaction, 21,000 intrinsic,
calldata, the relay's checks and state, and the call to the empty recipient. A row is the median of --reps
deliveries of distinct messages.

Hyperlane's published figures (Mailbox + multisig ISM: 151,966 / 159,736 / 166,518 for 1-of-1 / 2-of-3 /
3-of-3) exclude the recipient's work; the target is our 2-of-3 delivery of a DeviceMirror snapshot at most
0.8 x 159,736 = 127,789. A MISS is a finding, not a failure: the exit status is 0 whenever the benchmark ran,
1 when it could not run, 2 on bad usage. See bench/README.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import bench_cli

ROOT = Path(__file__).resolve().parent.parent
NOOP_SOURCE = ROOT / "bench" / "baselines" / "NoopRecipient.sol"

SOURCE_CHAIN_ID, DESTINATION_CHAIN_ID = 1001, 1002
# (threshold, validators)
VALIDATOR_SETS = ((1, 1), (2, 3), (3, 3), (5, 7))
HYPERLANE_GAS = {(1, 1): 151_966, (2, 3): 159_736, (3, 3): 166_518}
HYPERLANE_SOURCE = "Hyperlane Mailbox + multisig ISM, published overhead excluding the recipient (issue 4)"
TARGET_SET = (2, 3)
TARGET_FACTOR = 0.8
TARGET_PAYLOAD = "snapshot"
MESSAGE_GAS_LIMIT = 150_000  # DeviceMirrorPublisher.MIRROR_GAS_LIMIT: what a snapshot message asks for
DELIVER_TX_GAS = 2_000_000  # the transaction's gas limit; gasUsed does not depend on it
BUCKET_CAPACITY = 1_000_000  # rate limit far above what the run sends
INTRINSIC_GAS = 21_000
ACTIVE = 2  # IDeviceRegistry.DeviceState.Active


class Payload(NamedTuple):
    key: str
    label: str
    size: int


PAYLOADS = (
    Payload("snapshot", "DeviceMirror snapshot (abi-encoded 5 words)", 160),
    Payload("word", "one 32-byte word", 32),
)


# ---------------------------------------------------------------------------------------------- inputs


def validator_keys(count: int) -> list[Any]:
    """Deterministic validator keys, so figures repeat run to run (signer order changes calldata bytes)."""
    from eth_account import Account
    from eth_utils import keccak

    return [Account.from_key(keccak(text=f"thingledger bench validator {i}")) for i in range(count)]


def payload_bytes(payload: Payload, index: int) -> bytes:
    """A realistic payload: a DeviceMirror snapshot (device id, owner, key, Active, sequence) or one word."""
    from eth_abi import encode
    from eth_utils import keccak, to_checksum_address

    key = to_checksum_address(keccak(text=f"thingledger bench device key {index}")[-20:])
    owner = to_checksum_address(keccak(text=f"thingledger bench device owner {index}")[-20:])
    if payload.key == "snapshot":
        data = encode(["uint256", "address", "address", "uint8", "uint64"], [int(key, 16), owner, key, ACTIVE, index + 1])
    else:
        data = keccak(text=f"thingledger bench word {index}")
    if len(data) != payload.size:
        raise RuntimeError(f"{payload.key} payload is {len(data)} bytes, expected {payload.size}")
    return data


def quorum_signatures(digest: bytes, signers: list[Any]) -> bytes:
    """The signers' 65-byte r‖s‖v signatures of `digest`, concatenated in ascending signer order."""
    from eth_account import Account

    ordered = sorted(signers, key=lambda account: int(account.address, 16))
    return b"".join(bytes(Account.unsafe_sign_hash(digest, account.key).signature) for account in ordered)


def calldata_gas(data: bytes) -> int:
    """Calldata gas before Prague (the chain runs Shanghai): 4 per zero byte, 16 per other byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


# ---------------------------------------------------------------------------------------------- compilation


def compile_contracts() -> tuple[dict[str, Any], dict[str, Any]]:
    """The relay's artifact from the Ape project (compiled when sources changed) and NoopRecipient's from
    py-solc-x with the project's settings. Returns the artifacts and the compiler settings."""
    import solcx
    from ape import project
    from gas_foundation import project_compiler_settings
    from thingledger_bridge.devnet import Artifact, load_ape_artifact

    project.load_contracts()  # compiles what changed and writes .build/__local__.json
    compiler = project_compiler_settings()
    output = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": {"NoopRecipient.sol": {"content": NOOP_SOURCE.read_text()}},
            "settings": {**compiler["settings"], "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
        },
        solc_version=compiler["solc_version"],
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("NoopRecipient compilation failed: " + errors[0].get("formattedMessage", str(errors[0])))
    noop = output["contracts"]["NoopRecipient.sol"]["NoopRecipient"]
    artifacts = {
        "CrossChainRelay": load_ape_artifact("CrossChainRelay", ROOT / ".build"),
        "NoopRecipient": Artifact("NoopRecipient", noop["abi"], "0x" + noop["evm"]["bytecode"]["object"]),
    }
    return artifacts, compiler


# ---------------------------------------------------------------------------------------------- the run


class Delivery(NamedTuple):
    gas: int
    calldata_gas: int
    recipient_frame_gas: int | None
    send_gas: int
    nonce: int


def recipient_frame_gas(web3: Any, tx_hash: bytes, recipient: str) -> int | None:
    """Gas used inside the recipient's call frame (anvil's callTracer); None when tracing is unavailable."""
    try:
        trace = web3.provider.make_request("debug_traceTransaction", [web3.to_hex(tx_hash), {"tracer": "callTracer"}])
    except Exception:  # noqa: BLE001 - a context column: left empty when tracing is unavailable
        return None
    frames = list((trace.get("result") or {}).get("calls") or [])
    while frames:
        frame = frames.pop()
        if str(frame.get("to", "")).lower() == recipient.lower():
            return int(frame["gasUsed"], 16)
        frames.extend(frame.get("calls") or [])
    return None


def measure_set(
    artifacts: dict[str, Any],
    source: Any,
    destination: Any,
    threshold: int,
    size: int,
    reps: int,
) -> dict[str, list[Delivery]]:
    """Deploys a relay pair with a `threshold`-of-`size` set and delivers `reps` messages per payload."""
    from thingledger_bridge.devnet import deploy
    from thingledger_bridge.messages import Message

    relay_artifact, noop_artifact = artifacts["CrossChainRelay"], artifacts["NoopRecipient"]
    validators = validator_keys(size)
    addresses = [v.address for v in validators]
    a, b = source.web3, destination.web3
    owner_a, sender = a.eth.accounts[0], a.eth.accounts[1]
    owner_b, relayer = b.eth.accounts[0], b.eth.accounts[2]
    zero = "0x" + "00" * 20
    relay_a = deploy(a, relay_artifact, owner_a, zero, addresses, threshold)
    relay_b = deploy(b, relay_artifact, owner_b, zero, addresses, threshold)
    recipient = deploy(b, noop_artifact)
    for web3, relay, owner, chain_id, remote in (
        (a, relay_a, owner_a, DESTINATION_CHAIN_ID, relay_b.address),
        (b, relay_b, owner_b, SOURCE_CHAIN_ID, relay_a.address),
    ):
        tx = relay.functions.setRemote(chain_id, remote, BUCKET_CAPACITY, BUCKET_CAPACITY).transact({"from": owner})
        if web3.eth.wait_for_transaction_receipt(tx)["status"] != 1:
            raise RuntimeError(f"setRemote on chain {web3.eth.chain_id} reverted")
    tx = relay_a.functions.setSenderAllowed(sender, True).transact({"from": owner_a})
    if a.eth.wait_for_transaction_receipt(tx)["status"] != 1:
        raise RuntimeError("setSenderAllowed reverted")

    deliveries: dict[str, list[Delivery]] = {}
    for payload in PAYLOADS:
        samples = []
        for i in range(reps):
            data = payload_bytes(payload, i)
            send_tx = relay_a.functions.send(DESTINATION_CHAIN_ID, recipient.address, MESSAGE_GAS_LIMIT, data).transact(
                {"from": sender}
            )
            send_receipt = a.eth.wait_for_transaction_receipt(send_tx)
            if send_receipt["status"] != 1:
                raise RuntimeError("send reverted")
            (event,) = relay_a.events.MessageSent().process_receipt(send_receipt)
            m = event["args"]["message"]
            message = (m["version"], m["nonce"], m["srcChainId"], m["srcRelay"], m["sender"], m["dstChainId"],
                       m["dstRelay"], m["recipient"], m["gasLimit"], bytes(m["payload"]))
            digest = Message.from_tuple(message).delivery_digest()
            if digest != bytes(relay_b.functions.deliveryDigest(message).call()):
                raise RuntimeError("the benchmark's EIP-712 digest differs from the relay's deliveryDigest")
            signatures = quorum_signatures(digest, validators[:threshold])
            deliver_tx = relay_b.functions.deliver(message, signatures).transact({"from": relayer, "gas": DELIVER_TX_GAS})
            receipt = b.eth.wait_for_transaction_receipt(deliver_tx)
            if receipt["status"] != 1 or not relay_b.events.MessageDelivered().process_receipt(receipt):
                raise RuntimeError(f"delivery of message {b.to_hex(event['args']['id'])} failed")
            input_data = bytes(b.eth.get_transaction(deliver_tx)["input"])
            samples.append(
                Delivery(
                    gas=int(receipt["gasUsed"]),
                    calldata_gas=calldata_gas(input_data),
                    recipient_frame_gas=recipient_frame_gas(b, deliver_tx, recipient.address),
                    send_gas=int(send_receipt["gasUsed"]),
                    nonce=int(m["nonce"]),
                )
            )
        deliveries[payload.key] = samples
    return deliveries


def median(values: list[int]) -> int:
    return int(round(statistics.median(values)))


def run_benchmark(reps: int) -> dict[str, Any]:
    from ape.logging import logger
    from thingledger_bridge.devnet import start_anvil

    logger.set_level("ERROR")
    started = time.monotonic()
    artifacts, compiler = compile_contracts()
    source = start_anvil(SOURCE_CHAIN_ID)
    try:
        destination = start_anvil(DESTINATION_CHAIN_ID)
    except BaseException:
        source.stop()
        raise
    try:
        client = destination.web3.client_version
        measured = {
            (threshold, size): measure_set(artifacts, source, destination, threshold, size, reps)
            for threshold, size in VALIDATOR_SETS
        }
    finally:
        destination.stop()
        source.stop()

    rows = []
    send_samples: dict[str, list[int]] = {payload.key: [] for payload in PAYLOADS}
    for (threshold, size), by_payload in measured.items():
        for payload in PAYLOADS:
            samples = by_payload[payload.key]
            gas = median([s.gas for s in samples])
            frames = [s.recipient_frame_gas for s in samples if s.recipient_frame_gas is not None]
            hyperlane = HYPERLANE_GAS.get((threshold, size))
            rows.append(
                {
                    "set": f"{threshold}-of-{size}",
                    "threshold": threshold,
                    "validators": size,
                    "payload": payload.key,
                    "payload_bytes": payload.size,
                    "gas": gas,
                    "samples": [s.gas for s in samples],
                    "intrinsic_gas": INTRINSIC_GAS,
                    "calldata_gas": median([s.calldata_gas for s in samples]),
                    "recipient_frame_gas": median(frames) if frames else None,
                    "execution_gas": gas - INTRINSIC_GAS - median([s.calldata_gas for s in samples]),
                    "hyperlane_gas": hyperlane,
                    "ratio_to_hyperlane": round(gas / hyperlane, 4) if hyperlane else None,
                }
            )
            # A relay's first send moves its nonce 0 -> 1; every later one rewrites it.
            send_samples[payload.key] += [s.send_gas for s in samples if s.nonce > 0]

    target_row = next(
        r for r in rows if (r["threshold"], r["validators"]) == TARGET_SET and r["payload"] == TARGET_PAYLOAD
    )
    limit_gas = TARGET_FACTOR * HYPERLANE_GAS[TARGET_SET]  # 127,788.8
    return {
        "meta": {
            "chains": [SOURCE_CHAIN_ID, DESTINATION_CHAIN_ID],
            "client": client,
            "hardfork": "shanghai",
            "solc_version": compiler["solc_version"],
            "compiler_settings": compiler["settings"],
            "repetitions": reps,
            "message_gas_limit": MESSAGE_GAS_LIMIT,
            "gas": (
                "receipt gasUsed of deliver: the whole transaction, 21,000 intrinsic, calldata (message and "
                "threshold signatures), signature checks, the status and rate-limit writes, and the call to an "
                "empty recipient (NoopRecipient); each message new, every slot cold"
            ),
            "hyperlane": HYPERLANE_SOURCE,
            "seconds": round(time.monotonic() - started, 1),
        },
        "deliver": rows,
        "send": {
            payload.key: {
                "payload_bytes": payload.size,
                "gas": median(send_samples[payload.key]),
                "samples": send_samples[payload.key],
                "note": "an allowed EOA sender; the relay's nonce non-zero -> non-zero (each relay's first send excluded)",
            }
            for payload in PAYLOADS
        },
        "target": {
            "target": f"deliver {TARGET_SET[0]}-of-{TARGET_SET[1]} ({TARGET_PAYLOAD} payload) <= "
            f"{TARGET_FACTOR} x Hyperlane {TARGET_SET[0]}-of-{TARGET_SET[1]}",
            "gas": target_row["gas"],
            "hyperlane_gas": HYPERLANE_GAS[TARGET_SET],
            "ratio": target_row["ratio_to_hyperlane"],
            "limit": TARGET_FACTOR,
            "limit_gas": round(limit_gas),
            "pass": target_row["gas"] <= limit_gas,
        },
    }


# ---------------------------------------------------------------------------------------------- output


def print_tables(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = bench_cli.console()
    meta = result["meta"]
    optimizer = meta["compiler_settings"].get("optimizer", {})
    table = Table(
        title="CrossChainRelay.deliver gas (receipt gasUsed, whole transaction) beside Hyperlane",
        caption=(
            f"Included: 21,000 intrinsic, calldata, the relay's checks and writes, the call to an empty recipient. "
            f"Hyperlane's figures exclude the recipient's work.\n"
            f"median of {meta['repetitions']} deliveries of distinct messages (cold storage), message gas limit "
            f"{meta['message_gas_limit']:,}; solc {meta['solc_version']}, optimizer "
            f"{'on' if optimizer.get('enabled') else 'off'} ({optimizer.get('runs')} runs), "
            f"evm {meta['compiler_settings'].get('evmVersion', 'default')}; {meta['client']}; {meta['seconds']} s"
        ),
    )
    for column in ("validators", "payload", "deliver gas", "calldata", "execution", "recipient frame",
                   "Hyperlane", "ratio"):
        table.add_column(column, justify="left" if column in ("validators", "payload") else "right")
    for row in result["deliver"]:
        spread = "" if min(row["samples"]) == max(row["samples"]) else f" [dim]({min(row['samples']):,}-{max(row['samples']):,})[/dim]"
        table.add_row(
            row["set"],
            f"{row['payload_bytes']} bytes",
            f"{row['gas']:,}{spread}",
            f"{row['calldata_gas']:,}",
            f"{row['execution_gas']:,}",
            f"{row['recipient_frame_gas']:,}" if row["recipient_frame_gas"] is not None else "n/a",
            f"{row['hyperlane_gas']:,}" if row["hyperlane_gas"] else "—",
            f"{row['ratio_to_hyperlane']:.2f}x" if row["ratio_to_hyperlane"] else "—",
        )
    console.print(table)
    console.print(
        "[dim]execution = deliver gas - 21,000 - calldata; recipient frame = gas spent inside the empty "
        "recipient's call (callTracer), part of execution.[/dim]"
    )

    sends = Table(title="CrossChainRelay.send gas (receipt gasUsed, whole transaction)")
    for column in ("payload", "gas", "note"):
        sends.add_column(column, justify="right" if column == "gas" else "left")
    for key, figure in result["send"].items():
        sends.add_row(f"{figure['payload_bytes']} bytes ({key})", f"{figure['gas']:,}",
                      f"{figure['note']} [dim](median of {len(figure['samples'])})[/dim]")
    console.print(sends)

    target = result["target"]
    targets = bench_cli.targets_table()
    targets.add_row(
        target["target"],
        f"{target['gas']:,} / {target['hyperlane_gas']:,}",
        f"{target['ratio']:.2f}x",
        f"<= {target['limit']}x ({target['limit_gas']:,})",
        "[green]PASS[/green]" if target["pass"] else "[red]MISS[/red]",
    )
    console.print(targets)


def main(argv: list[str] | None = None) -> int:
    return bench_cli.main(
        argv,
        prog="gas_relay.py",
        description="Print the gas of CrossChainRelay.deliver per validator set beside Hyperlane's, on two local chains.",
        reps_default=7,
        reps_help="deliveries of distinct messages behind each median (3-25, default 7)",
        run=run_benchmark,
        print_tables=print_tables,
    )


if __name__ == "__main__":
    sys.exit(main())

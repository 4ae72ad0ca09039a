"""End-to-end latency and throughput of the bridging node between two local chains.

    python bench/relayer_throughput.py            # tables (rich); progress on stderr
    python bench/relayer_throughput.py --json     # one JSON object with every figure
    python bench/relayer_throughput.py --reps 10  # sequential messages behind the latency figures (3-25, default 20)

Starts two anvil chains (ids 1001 and 1002, a block every second each), deploys a CrossChainRelay on each
(trusted both ways, a 2-of-3 validator set, a rate limit far above the run's needs) and a RelayRecipientMock in
Accept mode on 1002, then runs the node as a user would: three `thingledger-bridge validator` processes and one
`thingledger-bridge run` process, each with its TOML configuration in a temporary folder (keys through
private_key_env), confirmations 1 and a poll interval of 0.2 s on both chains.

(a) Latency: --reps single messages, one after the other, each from the moment its `send` is seen mined on
    1001 to the moment the relay on 1002 reports it Delivered (both observed by polling every 20 ms);
    median and 95th percentile. It includes waiting for the next block of 1001 (the confirmation), the
    validators' and the relayer's polls, and the delivery's block on 1002.
(b) Throughput: 200 messages sent at once (one JSON-RPC batch); messages per second from the batch's
    submission to the last MessageDelivered on 1002.
A warm-up message is delivered first and counted in neither. Every message must be delivered exactly once: the
recipient's count of received messages and the relayer's `messages --json` are checked at the end.

Exit status: 0 when the benchmark ran, 1 when it could not run, 2 on bad usage. See bench/README.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_cli
from thingledger_bridge.devnet import ChainSettings, LocalBridge, rpc, wait_until

ROOT = Path(__file__).resolve().parent.parent

SOURCE_CHAIN_ID, DESTINATION_CHAIN_ID = 1001, 1002
BLOCK_SECONDS = 1  # both chains, interval mining
CONFIRMATIONS = 1
POLL_INTERVAL = 0.2
VALIDATORS, THRESHOLD = 3, 2
BURST = 200
MESSAGE_GAS_LIMIT = 200_000  # RelayRecipientMock in Accept mode records the message (several new slots)
SEND_TX_GAS = 300_000
RATE_CAPACITY, RATE_REFILL_PER_HOUR = 10_000, 36_000
OBSERVE_EVERY = 0.02  # seconds between polls of the benchmark itself
FIRST_DELIVERY_TIMEOUT = 90.0  # the node processes start (imports, first scan)
DELIVERY_TIMEOUT = 60.0
BURST_TIMEOUT = 600.0
ETHER = 10**18
PAYLOAD_BYTES = 160  # the size of a DeviceMirror snapshot
# Latency figures: the end-to-end ones, then the phases that add up to "from_mined".
PHASES = {
    "from_mined": "send mined on 1001 -> MessageDelivered on 1002",
    "from_submitted": "send submitted -> MessageDelivered on 1002",
    "inclusion_on_source": "  send submitted -> mined on 1001",
    "confirmation": "  of which: mined -> next block of 1001 (confirmations 1)",
    "quorum_signed": "  of which: confirmed -> 2nd validator signature written",
    "relayer_submits": "  of which: quorum -> relayer submits deliver",
    "inclusion_on_destination": "  of which: deliver submitted -> Delivered seen on 1002",
}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def progress_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


class Bench:
    """The two chains, the contracts, the node processes and the measurements."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.chains: list[Any] = []
        self.bridge: LocalBridge | None = None

    # ------------------------------------------------------------------ set-up

    def set_up(self) -> None:
        from ape import project
        from eth_account import Account
        from thingledger_bridge.devnet import deploy, load_ape_artifact, start_anvil

        project.load_contracts()  # compiles what changed and writes .build/__local__.json
        relay_artifact = load_ape_artifact("CrossChainRelay", ROOT / ".build")
        mock_artifact = load_ape_artifact("RelayRecipientMock", ROOT / ".build")
        self.chains = [start_anvil(SOURCE_CHAIN_ID), start_anvil(DESTINATION_CHAIN_ID)]
        source, destination = self.chains
        self.a, self.b = source.web3, destination.web3
        self.sender = self.a.eth.accounts[1]
        validators = [Account.create() for _ in range(VALIDATORS)]
        addresses = [v.address for v in validators]
        zero = "0x" + "00" * 20
        self.relay_a = deploy(self.a, relay_artifact, self.a.eth.accounts[0], zero, addresses, THRESHOLD)
        self.relay_b = deploy(self.b, relay_artifact, self.b.eth.accounts[0], zero, addresses, THRESHOLD)
        self.recipient = deploy(self.b, mock_artifact, self.relay_b.address)
        for web3, call in (
            (self.a, self.relay_a.functions.setRemote(DESTINATION_CHAIN_ID, self.relay_b.address, RATE_CAPACITY,
                                                      RATE_REFILL_PER_HOUR)),
            (self.a, self.relay_a.functions.setSenderAllowed(self.sender, True)),
            (self.b, self.relay_b.functions.setRemote(SOURCE_CHAIN_ID, self.relay_a.address, RATE_CAPACITY,
                                                      RATE_REFILL_PER_HOUR)),
            (self.b, self.recipient.functions.setTrusted(SOURCE_CHAIN_ID, self.sender, True)),
        ):
            receipt = web3.eth.wait_for_transaction_receipt(call.transact({"from": web3.eth.accounts[0]}))
            if receipt["status"] != 1:
                raise RuntimeError(f"set-up transaction {call.fn_name} reverted on chain {web3.eth.chain_id}")
        relayer = Account.create()
        rpc(self.b, "anvil_setBalance", relayer.address, hex(100 * ETHER))
        for web3 in (self.a, self.b):
            rpc(web3, "evm_setIntervalMining", BLOCK_SECONDS)
        settings = [
            ChainSettings("source", SOURCE_CHAIN_ID, source.rpc_url, self.relay_a.address, CONFIRMATIONS, POLL_INTERVAL),
            ChainSettings("destination", DESTINATION_CHAIN_ID, destination.rpc_url, self.relay_b.address,
                          CONFIRMATIONS, POLL_INTERVAL),
        ]
        self.bridge = LocalBridge(self.folder, settings, ["0x" + bytes(v.key).hex() for v in validators],
                                  "0x" + bytes(relayer.key).hex())
        self.bridge.start()

    def tear_down(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        for chain in self.chains:
            chain.stop()

    # ------------------------------------------------------------------ messages

    def payload(self, index: int) -> bytes:
        return index.to_bytes(32, "big") * (PAYLOAD_BYTES // 32)

    def send_call(self, index: int) -> Any:
        return self.relay_a.functions.send(DESTINATION_CHAIN_ID, self.recipient.address, MESSAGE_GAS_LIMIT,
                                           self.payload(index))

    def send_data(self, index: int) -> str:
        return self.relay_a.encode_abi("send", args=[DESTINATION_CHAIN_ID, self.recipient.address, MESSAGE_GAS_LIMIT,
                                                     self.payload(index)])

    def check(self) -> None:
        assert self.bridge is not None
        self.bridge.check()

    def delivered(self, message_id: bytes) -> bool:
        status = self.relay_b.functions.messageStatus(message_id).call()
        if status == 2:
            raise RuntimeError(f"message 0x{message_id.hex()} Failed on the destination")
        return status == 1

    def one_message(self, index: int, timeout: float) -> dict[str, Any]:
        """Sends one message and waits for its delivery, noting (wall clock, as the node's JSON events) when the
        send was submitted, seen mined, seen confirmed (the head of 1001 `CONFIRMATIONS` blocks above it) and
        seen Delivered on 1002."""
        submitted = time.time()
        tx_hash = self.send_call(index).transact({"from": self.sender, "gas": SEND_TX_GAS})
        receipt = wait_until(lambda: self._receipt(tx_hash), DELIVERY_TIMEOUT, "the send's receipt",
                             interval=OBSERVE_EVERY)
        mined = time.time()
        if receipt["status"] != 1:
            raise RuntimeError("send reverted")
        message_id = bytes(receipt["logs"][0]["topics"][1])
        confirmed_block = receipt["blockNumber"] + CONFIRMATIONS
        confirmed = None
        deadline = time.monotonic() + timeout
        while not self.delivered(message_id):
            if confirmed is None and self.a.eth.block_number >= confirmed_block:
                confirmed = time.time()
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"delivery of message 0x{message_id.hex()}: not within {timeout:.0f} s")
            time.sleep(OBSERVE_EVERY)
        done = time.time()
        return {"id": "0x" + message_id.hex(), "submitted": submitted, "mined": mined,
                "confirmed": confirmed if confirmed is not None else done, "delivered": done}

    def phases(self, samples: list[dict[str, Any]]) -> list[dict[str, float]]:
        """Each sample's latency split at the node's own events: the `THRESHOLD`-th validator's "signed" and the
        relayer's "submitted" (its delivery transaction)."""
        assert self.bridge is not None
        signed: dict[str, list[float]] = {}
        for event in self.bridge.events("validator"):
            if event.get("event") == "signed":
                signed.setdefault(str(event["id"]).lower(), []).append(float(event["time"]))
        submitted: dict[str, float] = {}
        for event in self.bridge.events("relayer"):
            if event.get("event") == "submitted" and event.get("kind", "deliver") == "deliver":
                submitted.setdefault(str(event["id"]).lower(), float(event["time"]))
        result = []
        for sample in samples:
            times = sorted(signed.get(sample["id"], []))
            if len(times) < THRESHOLD or sample["id"] not in submitted:
                raise RuntimeError(f"the node's events do not show message {sample['id']} signed and submitted")
            quorum, sent = times[THRESHOLD - 1], submitted[sample["id"]]
            result.append({
                "from_mined": sample["delivered"] - sample["mined"],
                "from_submitted": sample["delivered"] - sample["submitted"],
                "inclusion_on_source": sample["mined"] - sample["submitted"],
                "confirmation": sample["confirmed"] - sample["mined"],
                "quorum_signed": quorum - sample["confirmed"],
                "relayer_submits": sent - quorum,
                "inclusion_on_destination": sample["delivered"] - sent,
            })
        return result

    def node_rates(self, ids: set[str]) -> dict[str, Any]:
        """How fast the node itself went through `ids`, from its JSON events: the relayer's first to last
        `submitted` deliver, and each validator's first to last `signed`."""
        assert self.bridge is not None
        submitted = sorted(float(e["time"]) for e in self.bridge.events("relayer")
                           if e.get("event") == "submitted" and str(e.get("id")).lower() in ids)
        if len(submitted) < len(ids):
            raise RuntimeError(f"the relayer's events show {len(submitted)} deliveries submitted, {len(ids)} expected")
        spans = []
        for index in range(1, VALIDATORS + 1):
            signed = sorted(float(e["time"]) for e in self.bridge.events(f"validator-{index}")
                            if e.get("event") == "signed" and str(e.get("id")).lower() in ids)
            if signed:
                spans.append(signed[-1] - signed[0])
        relayer_span = submitted[-1] - submitted[0]
        return {
            "relayer_submit_seconds": round(relayer_span, 3),
            "relayer_submissions_per_second": round(len(submitted) / relayer_span, 1) if relayer_span > 0 else None,
            "validator_sign_seconds_slowest": round(max(spans), 3) if spans else None,
        }

    def _receipt(self, tx_hash: bytes) -> Any:
        from web3.exceptions import TransactionNotFound

        try:
            return self.a.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def burst(self, count: int, progress: Any) -> dict[str, Any]:
        """Sends `count` messages in one JSON-RPC batch and waits until all are delivered."""
        first_block_b = self.b.eth.block_number + 1
        first_block_a = self.a.eth.block_number + 1
        nonce = self.a.eth.get_transaction_count(self.sender, "pending")
        requests = [
            ("eth_sendTransaction", [{"from": self.sender, "to": self.relay_a.address, "gas": hex(SEND_TX_GAS),
                                      "nonce": hex(nonce + i), "data": self.send_data(10_000 + i)}])
            for i in range(count)
        ]
        started = time.perf_counter()
        answers = self.a.provider.make_batch_request(requests)
        if not isinstance(answers, list) or any("error" in answer for answer in answers):
            raise RuntimeError(f"the burst's batch was refused: {answers if not isinstance(answers, list) else answers[0]}")
        submitted = time.perf_counter() - started
        hashes = {answer["result"] for answer in answers}

        sent_event = self.relay_a.events.MessageSent()
        ids: set[bytes] = set()
        task = progress.add_task(f"burst: {count} messages delivered", total=count)
        delivered_at: dict[bytes, float] = {}
        delivery_blocks: set[int] = set()
        send_blocks: set[int] = set()
        next_a, next_b = first_block_a, first_block_b
        deadline = started + BURST_TIMEOUT
        while len(delivered_at) < count:
            self.check()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"burst: {len(delivered_at)} of {count} messages delivered in {BURST_TIMEOUT:.0f} s")
            head_a, head_b = self.a.eth.block_number, self.b.eth.block_number
            if head_a >= next_a and len(ids) < count:
                for log in sent_event.get_logs(from_block=next_a, to_block=head_a):
                    if log["transactionHash"].to_0x_hex() in hashes:
                        ids.add(bytes(log["args"]["id"]))
                        send_blocks.add(log["blockNumber"])
                next_a = head_a + 1
            if head_b >= next_b:
                now = time.perf_counter()
                for log in self.relay_b.events.MessageDelivered().get_logs(from_block=next_b, to_block=head_b):
                    message_id = bytes(log["args"]["id"])
                    if message_id in delivered_at:
                        raise RuntimeError(f"message 0x{message_id.hex()} delivered twice")
                    delivered_at[message_id] = now
                    delivery_blocks.add(log["blockNumber"])
                next_b = head_b + 1
                progress.update(task, completed=len(delivered_at))
            time.sleep(0.1)
        if set(delivered_at) != ids:
            raise RuntimeError("the messages delivered are not the burst's")
        times = sorted(t - started for t in delivered_at.values())
        seconds = times[-1]
        node = self.node_rates({"0x" + message_id.hex() for message_id in ids})
        return {
            **node,
            "messages": count,
            "seconds": round(seconds, 3),
            "messages_per_second": round(count / seconds, 2),
            "batch_submission_seconds": round(submitted, 3),
            "first_delivery_seconds": round(times[0], 3),
            "median_delivery_seconds": round(statistics.median(times), 3),
            "source_blocks": len(send_blocks),
            "destination_blocks": len(delivery_blocks),
        }


def run_benchmark(reps: int) -> dict[str, Any]:
    from ape.logging import logger
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    logger.set_level("ERROR")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thingledger-relayer-bench-") as folder:
        bench = Bench(Path(folder))
        try:
            bench.set_up()
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=progress_console(), transient=True) as progress:
                task = progress.add_task("warm-up message (the node processes start)", total=1)
                bench.one_message(0, FIRST_DELIVERY_TIMEOUT)
                progress.update(task, completed=1)
                task = progress.add_task("latency: single messages delivered", total=reps)
                samples = []
                for i in range(reps):
                    samples.append(bench.one_message(1 + i, DELIVERY_TIMEOUT))
                    progress.update(task, completed=i + 1)
                latencies = bench.phases(samples)
                burst = bench.burst(BURST, progress)
            received = bench.recipient.functions.received().call()
            expected = 1 + reps + BURST
            if received != expected:
                raise RuntimeError(f"the recipient received {received} messages, {expected} were sent")
            states: dict[str, int] = {}
            assert bench.bridge is not None
            for message in bench.bridge.query("messages"):
                states[message["state"]] = states.get(message["state"], 0) + 1
            if states.get("delivered") != expected:
                raise RuntimeError(f"the relayer reports {states}, expected {expected} delivered")
            client = bench.b.client_version
        finally:
            bench.tear_down()

    def summary(key: str) -> dict[str, Any]:
        values = [item[key] for item in latencies]
        return {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3),
                "min": round(min(values), 3), "max": round(max(values), 3), "samples": [round(x, 3) for x in values]}

    return {
        "meta": {
            "chains": [SOURCE_CHAIN_ID, DESTINATION_CHAIN_ID],
            "client": client,
            "block_seconds": BLOCK_SECONDS,
            "confirmations": CONFIRMATIONS,
            "poll_interval_seconds": POLL_INTERVAL,
            "validators": VALIDATORS,
            "threshold": THRESHOLD,
            "payload_bytes": PAYLOAD_BYTES,
            "message_gas_limit": MESSAGE_GAS_LIMIT,
            "recipient": "RelayRecipientMock (Accept mode)",
            "node": "3 x `thingledger-bridge validator`, 1 x `thingledger-bridge run` (separate processes)",
            "observed_every_seconds": OBSERVE_EVERY,
            "seconds": round(time.monotonic() - started, 1),
        },
        "latency": {"messages": reps, **{key: summary(key) for key in PHASES}},
        "burst": burst,
        "exactly_once": {"received_by_recipient": received, "sent": expected, "relayer_states": states},
    }


def print_tables(result: dict[str, Any]) -> None:
    from rich.table import Table

    console = bench_cli.console()
    meta = result["meta"]
    console.print(
        f"settings: chains {meta['chains'][0]} -> {meta['chains'][1]}, a block every {meta['block_seconds']} s on "
        f"each (anvil interval mining), confirmations {meta['confirmations']}, poll interval "
        f"{meta['poll_interval_seconds']} s, {meta['threshold']}-of-{meta['validators']} validators; {meta['node']}; "
        f"payload {meta['payload_bytes']} bytes to {meta['recipient']}; {meta['client']}; {meta['seconds']} s"
    )
    latency = result["latency"]
    table = Table(title=f"end-to-end latency of single messages (n = {latency['messages']}, sequential)")
    for column in ("measured", "median", "p95", "min", "max"):
        table.add_column(column, justify="left" if column == "measured" else "right")
    for key, label in PHASES.items():
        figure = latency[key]
        if key == "inclusion_on_source":
            table.add_section()
        table.add_row(f"[bold]{label}[/bold]" if key == "from_mined" else label,
                      *(f"{figure[column]:.2f} s" for column in ("median", "p95", "min", "max")))
    console.print(table)
    console.print("[dim]Phases: wall-clock times of the benchmark's observations (every 20 ms) and of the node's own "
                  "JSON events (validators' `signed`, the relayer's `submitted`); the phases' medians need not add "
                  "up to the total's, and on a loaded machine, where the benchmark sees a block late, a phase can "
                  "come out slightly negative.[/dim]")

    burst = result["burst"]
    table = Table(title=f"throughput: a burst of {burst['messages']} messages sent at once")
    table.add_column("measured")
    table.add_column("value", justify="right")
    table.add_row("messages per second (first send submitted -> last delivery)", f"{burst['messages_per_second']:.1f}")
    table.add_row("first send submitted -> last delivery", f"{burst['seconds']:.2f} s")
    table.add_row("  -> first delivery", f"{burst['first_delivery_seconds']:.2f} s")
    table.add_row("  -> half delivered", f"{burst['median_delivery_seconds']:.2f} s")
    rate = burst["relayer_submissions_per_second"]
    table.add_row("the relayer's own pace: first -> last deliver submitted",
                  f"{burst['relayer_submit_seconds']:.2f} s" + (f" ({rate:,.0f}/s)" if rate else ""))
    # Not shown: validators print their `signed` events after writing a whole block's signatures, so the spread
    # of those events says nothing about signing speed when the burst sits in one block (it is in --json).
    table.add_row("blocks holding the sends (1001) / the deliveries (1002)",
                  f"{burst['source_blocks']} / {burst['destination_blocks']}")
    once = result["exactly_once"]
    table.add_row("received by the recipient / sent (warm-up, singles, burst)",
                  f"{once['received_by_recipient']} / {once['sent']}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    return bench_cli.main(
        argv,
        prog="relayer_throughput.py",
        description="Measure the bridging node's end-to-end latency and messages per second between two local chains.",
        reps_default=20,
        reps_help="sequential single messages behind the latency figures (3-25, default 20)",
        run=run_benchmark,
        print_tables=print_tables,
    )


if __name__ == "__main__":
    sys.exit(main())

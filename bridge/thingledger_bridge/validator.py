"""The validator: signs a message only after checking it.

For every `MessageSent` log of a configured chain's relay, up to that chain's safe head, it checks:
the log comes from the configured relay; its block is at least `confirmations` deep (or finalized);
re-reading the transaction's receipt gives the same block hash and the same log; the decoded message hashes
to the log's id; its source chain and relay are this chain's; its destination is a configured chain whose
relay is `message.dstRelay`. Then it signs the message's EIP-712 digest in the destination relay's domain and
writes the signature to the store atomically. Anything that fails a check is reported and never signed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from . import failpoints
from .chain import ChainClient, RpcError, from_hex, hexbytes, unhex
from .config import Config
from .errors import BridgeError
from .messages import MESSAGE_SENT_TOPIC, MessageDecodeError, SentLog, decode_message_sent, hex_id
from .signature_store import SignatureRecord, read_signature, sign_digest, write_signatures
from .validator_store import ValidatorStore

Reporter = Callable[..., None]


@dataclass(frozen=True)
class Refusal:
    reason: str
    log: dict[str, Any]


def _same_log(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        str(a.get("address", "")).lower() == str(b.get("address", "")).lower()
        and [str(t).lower() for t in a.get("topics", [])] == [str(t).lower() for t in b.get("topics", [])]
        and str(a.get("data", "")).lower() == str(b.get("data", "")).lower()
        and from_hex(a.get("logIndex", "0x0")) == from_hex(b.get("logIndex", "0x0"))
    )


class Validator:
    def __init__(
        self,
        config: Config,
        account: LocalAccount,
        clients: dict[int, ChainClient],
        store: ValidatorStore,
        report: Reporter,
    ) -> None:
        self.config = config
        self.account = account
        self.address = account.address
        self.clients = clients
        self.store = store
        self.report = report

    def check_log(
        self, client: ChainClient, log: dict[str, Any], safe_head: int, receipt: dict[str, Any] | None
    ) -> SentLog | Refusal:
        """The decoded message if `log` passes every check, else why it was refused."""
        chain = client.config
        if str(log.get("address", "")).lower() != chain.relay.lower():
            return Refusal(f"log from {log.get('address')}, not the configured relay {chain.relay}", log)
        if log.get("removed"):
            return Refusal("log marked removed (reorg)", log)
        try:
            sent = decode_message_sent(log)
        except MessageDecodeError as error:
            return Refusal(str(error), log)
        if sent.block_number > safe_head:
            return Refusal(f"block {sent.block_number} is above the safe head {safe_head}", log)
        if receipt is None:
            return Refusal("transaction receipt not found on re-read (reorg?)", log)
        if unhex(receipt["blockHash"]) != sent.block_hash:
            return Refusal(
                f"receipt block hash {receipt['blockHash']} differs from the log's {hex_id(sent.block_hash)} (reorg?)",
                log,
            )
        if from_hex(receipt.get("status", "0x1")) != 1:
            return Refusal("transaction receipt says it reverted", log)
        if not any(_same_log(log, other) for other in receipt.get("logs", [])):
            return Refusal("the log is not in the re-read receipt", log)
        message = sent.message
        if message.message_id() != sent.id:
            return Refusal(f"message hashes to {hex_id(message.message_id())}, not the log's id", log)
        if message.src_chain_id != chain.chain_id or message.src_relay != chain.relay:
            return Refusal(
                f"source is chain {message.src_chain_id} relay {message.src_relay}, not {chain.chain_id} {chain.relay}",
                log,
            )
        destination = self.config.chain(message.dst_chain_id)
        if destination is None:
            return Refusal(f"destination chain {message.dst_chain_id} is not configured", log)
        if destination.chain_id == chain.chain_id:
            return Refusal("destination is the source chain", log)
        if destination.relay != message.dst_relay:
            return Refusal(
                f"destination relay {message.dst_relay} is not chain {destination.chain_id}'s relay "
                f"{destination.relay}",
                log,
            )
        return sent

    def signature(self, sent: SentLog) -> SignatureRecord | None:
        """The signature record of a checked message; None when the store already holds a valid one."""
        message_id = hex_id(sent.id)
        digest = sent.message.delivery_digest()
        if read_signature(self.config.signature_store, self.address, message_id, digest) is not None:
            return None
        return SignatureRecord(
            id=message_id,
            validator=self.address,
            signature=sign_digest(self.account, digest),
            digest=digest,
            dst_chain_id=sent.message.dst_chain_id,
            dst_relay=sent.message.dst_relay,
        )

    def process_chain(self, client: ChainClient) -> int:
        """Checks and signs everything up to the chain's safe head; returns how many messages it signed."""
        chain = client.config
        safe_head = client.safe_head()
        start = self.store.cursor(chain.chain_id)
        if start is None:
            start = chain.start_block
        signed_count = 0
        while start <= safe_head:
            end = min(safe_head, start + chain.max_block_range - 1)
            logs = client.get_logs(start, end, [hexbytes(MESSAGE_SENT_TOPIC)])
            tx_hashes = sorted({unhex(log["transactionHash"]) for log in logs})
            receipts = dict(zip(tx_hashes, client.receipts(tx_hashes), strict=True)) if tx_hashes else {}
            signed: list[tuple[str, int, int, int, str]] = []
            records: list[SignatureRecord] = []
            accepted: list[SentLog] = []
            for log in logs:
                outcome = self.check_log(client, log, safe_head, receipts.get(unhex(log["transactionHash"])))
                if isinstance(outcome, Refusal):
                    self.report(
                        "refused",
                        chain_id=chain.chain_id,
                        block=from_hex(log.get("blockNumber", "0x0")),
                        tx_hash=log.get("transactionHash"),
                        reason=outcome.reason,
                    )
                    continue
                message = outcome.message
                signed.append(
                    (
                        hex_id(outcome.id),
                        message.src_chain_id,
                        message.dst_chain_id,
                        message.nonce,
                        hex_id(message.delivery_digest()),
                    )
                )
                record = self.signature(outcome)
                if record is not None:
                    records.append(record)
                    accepted.append(outcome)
            # Every file is durable before the cursor moves past its block.
            write_signatures(
                self.config.signature_store,
                records,
                before_each=lambda: failpoints.reach("validator.before-signature-write"),
            )
            for outcome in accepted:
                signed_count += 1
                self.report(
                    "signed",
                    id=hex_id(outcome.id),
                    src_chain_id=outcome.message.src_chain_id,
                    dst_chain_id=outcome.message.dst_chain_id,
                    nonce=outcome.message.nonce,
                    block=outcome.block_number,
                )
            self.store.advance(chain.chain_id, end + 1, signed)
            start = end + 1
        return signed_count

    def run(self, *, once: bool, stop: threading.Event) -> int:
        """Processes every configured chain until `stop` is set (or one pass when `once`); returns how many
        messages it signed. A chain that does not answer is reported and left alone for a growing while
        (the others go on); with `once`, its error ends the run."""
        total = 0
        interval = min(chain.poll_interval for chain in self.config.chains)
        failures: dict[int, int] = {}
        down_until: dict[int, float] = {}
        while not stop.is_set():
            for chain_id, client in self.clients.items():
                if time.monotonic() < down_until.get(chain_id, 0.0):
                    continue
                try:
                    total += self.process_chain(client)
                    failures.pop(chain_id, None)
                except (BridgeError, RpcError) as error:
                    if once:
                        raise
                    failures[chain_id] = failures.get(chain_id, 0) + 1
                    delay = min(max(interval, 0.25) * 2 ** (failures[chain_id] - 1), 30.0)
                    down_until[chain_id] = time.monotonic() + delay
                    self.report("error", chain_id=chain_id, error=str(error), retry_in=round(delay, 3))
            if once:
                break
            stop.wait(interval)
        return total

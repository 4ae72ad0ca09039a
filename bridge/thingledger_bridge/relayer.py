"""The relayer: finds messages on the source chains, collects validators' signatures, delivers them on their
destination in nonce order per lane, exactly once, and survives crashes.

One pass (`Relayer.pass_once`):
  0. connect to the chains not checked yet (chain id, relay code): one that is down at the start does not hold
     up the others, it is tried again with the chain backoff below;
  1. check open submissions: a receipt settles the message (delivered / failed / reverted); a transaction
     without receipt `receipt_timeout` after its last broadcast attempt (at once after a restart) is
     rebroadcast while the destination status is None and its account nonce is unused, else the message is
     settled (from a receipt, looked up again before anything is declared dropped) or queued again;
  2. scan every source chain from its cursor to its safe head; the messages found and the new cursor are
     committed in ONE transaction;
  3. collect signatures of pending messages from the signature store (only valid ones by current validators
     of the destination relay);
  4. deliver the ready messages of each lane (source, destination) in nonce order: estimate on the latest
     block (a revert tells AlreadyProcessed / RateLimited / ... before anything is sent; AlreadyProcessed is
     believed only once `messageStatus` at the latest block confirms it), sign locally, RECORD the
     submission, then broadcast. Several deliveries are in flight at once; the account nonce is kept locally.

A chain that does not answer is left alone for a while (backoff_initial doubling up to backoff_max, like a
message's attempts) and the lanes that do not involve it go on; its RPC client fails fast (no retries when
nothing answers), so a dead chain costs the others no time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount

from . import failpoints
from .chain import (
    ChainClient,
    ChainMisconfigured,
    ChainUnavailable,
    Fees,
    RevertError,
    RpcError,
    from_hex,
    hexbytes,
    unhex,
)
from .config import Config, RelayerConfig
from .errors import BridgeError
from .messages import (
    MESSAGE_DELIVERED_TOPIC,
    MESSAGE_FAILED_TOPIC,
    MESSAGE_SENT_TOPIC,
    MessageDecodeError,
    SentLog,
    decode_message_sent,
    hex_id,
)
from .relay_abi import relay_abi
from .relayer_store import MessageRow, RelayerStore, Submission
from .signature_store import read_signature

Reporter = Callable[..., None]

GAS_MARGIN_PERCENT = 20
# Deliveries sent per destination chain in one pass: keeps a pass short on a large backlog, so receipts are
# settled and new messages scanned between batches.
MAX_DELIVERIES_PER_PASS = 256
PERMANENT_ERRORS = frozenset({"UntrustedSource", "WrongDestination", "UnsupportedVersion"})
NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "already been used", "oldnonce", "invalid nonce")
# Seconds before a call whose answer made no sense (see `is_relay_verdict`) is asked again: longer than a node
# takes to commit a block.
SECOND_OPINION_PAUSE = 0.05


def is_relay_verdict(error: RevertError) -> bool:
    """Whether a revert is one of the relay's own custom errors: a verdict on the delivery. A Panic, an
    Error(string) or data the relay never reverts with is not; a node answering from a view that is being
    updated (a block being mined: state and block header of different blocks) can produce such a revert, so
    it is asked again before it counts."""
    return error.decoded is not None and error.name not in ("Panic", "Error")


def estimate_deliveries(client: ChainClient, sender: str, datas: list[bytes]) -> list[int | RevertError]:
    """Gas estimates of `datas` on the latest block; those that reverted with anything but a verdict of the
    relay are estimated once more, a moment later, and the second answer stands."""
    estimates = client.estimate_gas_many(sender, datas)
    doubtful = [i for i, e in enumerate(estimates) if isinstance(e, RevertError) and not is_relay_verdict(e)]
    if doubtful:
        time.sleep(SECOND_OPINION_PAUSE)
        for index, estimate in zip(
            doubtful, client.estimate_gas_many(sender, [datas[i] for i in doubtful]), strict=True
        ):
            estimates[index] = estimate
    return estimates


def rate_limit_tokens(client: ChainClient, src_chain_id: int) -> int:
    """`rateLimitTokens(src_chain_id)` on the latest block, read twice at most: a view that reverts is a node
    answering from an inconsistent view (see `is_relay_verdict`), or a chain problem (BridgeError)."""
    failure: RevertError | None = None
    for attempt in range(2):
        if attempt:
            time.sleep(SECOND_OPINION_PAUSE)
        try:
            return int(client.call_relay("rateLimitTokens", src_chain_id)[0])
        except RevertError as error:
            failure = error
    assert failure is not None
    raise BridgeError(f"{client.label}: rateLimitTokens({src_chain_id}) reverted: {failure.description}")


def backoff_delay(attempts: int, initial: float, maximum: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: initial, doubling, capped at maximum."""
    if attempts < 1:
        return 0.0
    return float(min(initial * 2.0 ** (attempts - 1), maximum))


@dataclass
class PassResult:
    """What one pass did."""

    seen: int = 0
    submitted: int = 0
    settled: int = 0
    waiting_signatures: int = 0

    @property
    def progress(self) -> bool:
        return bool(self.seen or self.submitted or self.settled)


@dataclass
class ValidatorSet:
    validators: list[str]
    threshold: int
    epoch: int
    members: set[str] = field(default_factory=set)


def _receipt_outcome(receipt: dict[str, Any], relay: str, message_id: str) -> tuple[str, str | None] | None:
    """("delivered", None) or ("failed", reason) from a successful receipt's logs for `message_id`."""
    for log in receipt.get("logs", []):
        if str(log.get("address", "")).lower() != relay.lower():
            continue
        topics = [str(t).lower() for t in log.get("topics", [])]
        if len(topics) < 2 or topics[1] != message_id:
            continue
        if topics[0] == hexbytes(MESSAGE_DELIVERED_TOPIC):
            return "delivered", None
        if topics[0] == hexbytes(MESSAGE_FAILED_TOPIC):
            try:
                (reason,) = abi_decode(["bytes"], unhex(log["data"]))
            except Exception:  # noqa: BLE001 - an undecodable reason is still a failure
                reason = b""
            return "failed", "recipient reverted: " + relay_abi().describe_revert(bytes(reason))
    return None


class Relayer:
    def __init__(
        self,
        config: Config,
        account: LocalAccount,
        clients: dict[int, ChainClient],
        store: RelayerStore,
        report: Reporter,
        *,
        clock: Callable[[], float] = time.time,
        unchecked: Iterable[int] = (),
        check_open_at_start: bool = True,
    ) -> None:
        """`unchecked`: chains whose endpoint and relay were not checked yet (`ChainClient.check`): the first
        pass that reaches each checks it. `check_open_at_start`: whether the open submissions found in the
        database are looked at (and rebroadcast) at once, as after a restart, rather than after their
        receipt timeout (False for a process that only submits and waits, like `retry`)."""
        self.config = config
        self.settings: RelayerConfig = config.require_relayer()
        self.account = account
        self.address = account.address
        self.clients = clients
        self.store = store
        self.report = report
        self.clock = clock
        self.nonces: dict[int, int] = {}
        self.lane_wait: dict[tuple[int, int], float] = {}
        self._fees: dict[int, Fees] = {}
        self._validator_sets: dict[int, ValidatorSet] = {}
        # Chains whose open submissions are checked at the next look without waiting for their receipt
        # timeout: all after a start, and a chain again after it failed (a broadcast may have been cut).
        self.recheck: set[int] = set(clients) if check_open_at_start else set()
        self.unchecked: set[int] = set(unchecked) & set(clients)
        # Per chain: consecutive failures and when to try it again. An unreachable chain waits (backoff) and
        # does not hold up the others; its errors are reported and, with --once, end the run with exit 1.
        self._chain_failures: dict[int, int] = {}
        self._chain_down_until: dict[int, float] = {}
        # Per message: estimates that said AlreadyProcessed while its status at the latest block was None.
        self._unconfirmed_processed: dict[str, int] = {}
        self.pass_errors: list[str] = []

    # ------------------------------------------------------------------ helpers

    def client(self, chain_id: int) -> ChainClient:
        client = self.clients.get(chain_id)
        if client is None:
            raise BridgeError(f"chain {chain_id} is not configured")
        return client

    def chain_up(self, chain_id: int) -> bool:
        """Whether chain `chain_id` may be used now: configured, checked, and not waiting after a failure."""
        return (
            chain_id in self.clients
            and chain_id not in self.unchecked
            and self.clock() >= self._chain_down_until.get(chain_id, 0.0)
        )

    def chain_trusted(self, chain_id: int) -> bool:
        """Whether chain `chain_id` has answered since its last failure (worth waiting for its receipts)."""
        return chain_id in self.clients and chain_id not in self.unchecked and chain_id not in self._chain_failures

    def chain_failed(self, chain_id: int, error: Exception) -> None:
        """Chain `chain_id` did not answer: report it and leave it alone for a growing while (the relayer's
        backoff_initial, doubling per consecutive failure, capped at backoff_max)."""
        failures = self._chain_failures.get(chain_id, 0) + 1
        self._chain_failures[chain_id] = failures
        delay = backoff_delay(failures, self.settings.backoff_initial, self.settings.backoff_max)
        self._chain_down_until[chain_id] = self.clock() + delay
        self.nonces.pop(chain_id, None)
        self.recheck.add(chain_id)
        self.pass_errors.append(str(error))
        self.report("error", chain_id=chain_id, error=str(error), retry_in=round(delay, 3))

    def chain_answered(self, chain_id: int) -> None:
        self._chain_failures.pop(chain_id, None)
        self._chain_down_until.pop(chain_id, None)

    def check_chains(self) -> None:
        """Checks each chain not checked yet whose wait is over (its endpoint serves the configured chain id,
        its relay has code). An unreachable one waits like any failed chain; a wrong one (another chain id,
        no relay) is a configuration error and raises ChainMisconfigured."""
        for chain_id in sorted(self.unchecked):
            if self.clock() < self._chain_down_until.get(chain_id, 0.0):
                continue
            try:
                self.client(chain_id).check()
            except (ChainUnavailable, RpcError) as error:
                self.chain_failed(chain_id, error)
                continue
            self.unchecked.discard(chain_id)
            self.chain_answered(chain_id)
            self.recheck.add(chain_id)

    def validator_set(self, chain_id: int) -> ValidatorSet:
        cached = self._validator_sets.get(chain_id)
        if cached is None:
            validators, threshold, epoch = self.client(chain_id).validator_set()
            cached = ValidatorSet(validators, threshold, epoch, set(validators))
            self._validator_sets[chain_id] = cached
        return cached

    def fees(self, chain_id: int) -> Fees:
        if chain_id not in self._fees:
            self._fees[chain_id] = self.client(chain_id).fees()
        return self._fees[chain_id]

    def next_nonce(self, chain_id: int) -> int:
        if chain_id not in self.nonces:
            self.nonces[chain_id] = self.client(chain_id).transaction_count(self.address, "pending")
        return self.nonces[chain_id]

    def sign_transaction(self, chain_id: int, data: bytes, gas: int, nonce: int) -> tuple[bytes, bytes]:
        """(raw transaction, hash) calling chain `chain_id`'s relay with `data`, signed locally."""
        fees = self.fees(chain_id)
        tx: dict[str, Any] = {
            "chainId": chain_id,
            "nonce": nonce,
            "to": self.client(chain_id).relay,
            "data": data,
            "gas": gas,
            "value": 0,
            **fees.fields(),
        }
        if fees.gas_price is None:
            tx["type"] = 2
        signed = self.account.sign_transaction(tx)
        return bytes(signed.raw_transaction), bytes(signed.hash)

    def record_failure(self, row: MessageRow, error: str, attempts: int | None = None) -> None:
        """A failed attempt: back off, or park after max_attempts."""
        count = (row.attempts if attempts is None else attempts) + 1
        if count >= self.settings.max_attempts:
            reason = f"{error} (after {count} attempts)"
            self.store.park(row.id, count, reason)
            self.report("parked", id=row.id, attempts=count, reason=reason)
            return
        delay = backoff_delay(count, self.settings.backoff_initial, self.settings.backoff_max)
        next_at = self.clock() + delay
        self.store.back_off(row.id, count, next_at, error)
        self.report(
            "backoff", id=row.id, attempts=count, next_attempt_at=round(next_at, 3), delay=round(delay, 3), error=error
        )

    def settle_status(self, row: MessageRow, status: int, by: str, tx_hash: str | None = None) -> None:
        """Records a destination status that is not None: Delivered or Failed."""
        if status == 1:
            self.store.mark_delivered(row.id, by)
            self.report("delivered", id=row.id, by=by, tx_hash=tx_hash, nonce=row.message.nonce)
        else:
            reason = "Failed on the destination (its recipient reverted)"
            self.store.mark_failed(row.id, reason, by)
            self.report("failed", id=row.id, by=by, tx_hash=tx_hash, reason=reason)

    # ------------------------------------------------------------------ 1. open submissions

    def check_submissions(self, *, force: bool = False, message_id: str | None = None) -> int:
        """Settles or revives every open submission (or only those of `message_id`); returns how many
        messages were settled."""
        open_subs = self.store.open_submissions()
        if message_id is not None:
            open_subs = [sub for sub in open_subs if sub.message_id == message_id]
        if not open_subs:
            if message_id is None:
                self.recheck.clear()  # nothing left to look at on any chain
            return 0
        groups: OrderedDict[str, list[Submission]] = OrderedDict()
        for sub in open_subs:
            groups.setdefault(sub.message_id, []).append(sub)
        settled = 0
        by_chain: dict[int, list[Submission]] = {}
        for sub in open_subs:
            by_chain.setdefault(sub.chain_id, []).append(sub)
        receipts: dict[int, dict[str, Any] | None] = {}
        reachable: set[int] = set()
        for chain_id, subs in by_chain.items():
            if not self.chain_up(chain_id):
                continue
            try:
                answers = self.client(chain_id).receipts([s.tx_hash for s in subs])
            except (BridgeError, RpcError) as error:
                self.chain_failed(chain_id, error)
                continue
            reachable.add(chain_id)
            for sub, receipt in zip(subs, answers, strict=True):
                receipts[sub.id] = receipt
        groups = OrderedDict((key, subs) for key, subs in groups.items() if subs[0].chain_id in reachable)
        now = self.clock()
        stale: list[tuple[MessageRow, list[Submission]]] = []
        current = 0
        try:
            with self.store.transaction():  # every outcome found in this check is committed together
                for group_id, subs in groups.items():
                    current = subs[0].chain_id
                    row = self.store.message(group_id)
                    if row is None:
                        continue
                    mined = next(((s, r) for s in subs if (r := receipts.get(s.id)) is not None), None)
                    if mined is not None:
                        self.settle_receipt(row, mined[0], mined[1], subs)
                        settled += 1
                        continue
                    latest = subs[-1]
                    sent_at = latest.broadcast_at or latest.created_at
                    if force or latest.chain_id in self.recheck or now - sent_at >= self.settings.receipt_timeout:
                        stale.append((row, subs))
        except (BridgeError, RpcError) as error:
            # Nothing of this check was committed; the receipts are still there for the next one.
            self.chain_failed(current, error)
            return 0
        failed: set[int] = set()
        for row, subs in stale:
            chain_id = subs[-1].chain_id
            if not self.chain_up(chain_id):
                continue
            try:
                settled += self.revive(row, subs)
            except (BridgeError, RpcError) as error:
                failed.add(chain_id)
                self.chain_failed(chain_id, error)
        if message_id is None:
            self.recheck -= reachable - failed
        return settled

    def settle_receipt(self, row: MessageRow, sub: Submission, receipt: dict[str, Any], subs: list[Submission]) -> None:
        """A submission of `row` was mined: record its outcome."""
        block = from_hex(receipt.get("blockNumber", "0x0"))
        tx_hash = hex_id(sub.tx_hash)
        ok = from_hex(receipt.get("status", "0x0")) == 1
        self.store.close_submission(sub.id, "mined" if ok else "reverted", block_number=block)
        for other in subs:
            if other.id != sub.id:
                self.store.close_submission(other.id, "dropped", error=f"{tx_hash} was mined instead")
        relay = self.client(sub.chain_id).relay
        if ok:
            outcome = _receipt_outcome(receipt, relay, row.id)
            if outcome is None or outcome[0] == "delivered":
                self.store.mark_delivered(row.id, "us")
                self.report(
                    "delivered",
                    id=row.id,
                    by="us",
                    tx_hash=tx_hash,
                    nonce=row.message.nonce,
                    block=block,
                    gas_used=from_hex(receipt.get("gasUsed", "0x0")),
                )
            else:
                self.store.mark_failed(row.id, outcome[1] or "recipient reverted", "us")
                self.report("failed", id=row.id, by="us", tx_hash=tx_hash, reason=outcome[1])
            return
        if sub.kind == "retry":
            self.report("retry-reverted", id=row.id, tx_hash=tx_hash)
            return
        # Reverted on chain: another relayer may have delivered first, or the state changed after the estimate
        # (a rate limit spent by someone else, a pause). Estimating again tells which.
        client = self.client(sub.chain_id)
        status = client.message_statuses([unhex(row.id)])[0]
        if status != 0:
            self.settle_status(row, status, "other", tx_hash=tx_hash)
            return
        signatures = self.collect([row]).get(row.id)
        if signatures is not None:
            data = relay_abi().encode("deliver", row.message.as_tuple(), signatures)
            (estimate,) = estimate_deliveries(client, self.address, [data])
            if isinstance(estimate, RevertError):
                self.handle_revert(row, estimate, (row.message.src_chain_id, row.message.dst_chain_id), status)
                return
        self.record_failure(row, f"transaction {tx_hash} reverted on chain")

    def settle_from_receipts(self, row: MessageRow, subs: list[Submission], client: ChainClient) -> bool:
        """Looks up the receipts of all of `row`'s open submissions again; when one was mined, records its
        outcome (in one database transaction) and returns True."""
        receipts = client.receipts([s.tx_hash for s in subs])
        mined = next(((s, r) for s, r in zip(subs, receipts, strict=True) if r is not None), None)
        if mined is None:
            return False
        with self.store.transaction():
            self.settle_receipt(row, mined[0], mined[1], subs)
        return True

    def drop(self, row: MessageRow, subs: list[Submission], reason: str) -> None:
        """None of `row`'s open submissions can be mined any more (their receipts were looked up: none):
        they are closed as dropped and a delivery is queued again, in one database transaction."""
        with self.store.transaction():
            for sub in subs:
                self.store.close_submission(sub.id, "dropped", error=reason)
            if subs[-1].kind == "deliver":
                self.store.requeue(row.id, f"its transaction was dropped ({reason}); submitting again")
        if subs[-1].kind == "deliver":
            self.report("requeued", id=row.id, reason=reason)
        else:
            self.report("dropped", id=row.id, kind=subs[-1].kind, tx_hash=hex_id(subs[-1].tx_hash), reason=reason)

    def revive(self, row: MessageRow, subs: list[Submission]) -> int:
        """No receipt for `row`'s open submissions in time (or after a restart): never submit again once the
        destination status is not None; rebroadcast the recorded raw transaction while its nonce is unused;
        queue the message again when the nonce went to another transaction. Before any submission is declared
        dropped, the receipts of all of them are read again: one of ours may have been mined meanwhile (the
        node then answers "nonce too low" to the rebroadcast). Returns 1 when settled.

        Every attempt to rebroadcast, accepted or refused, is recorded as the submission's last broadcast
        attempt: the next one waits `receipt_timeout` from it."""
        latest = subs[-1]
        client = self.client(latest.chain_id)
        status = client.message_statuses([unhex(row.id)])[0]
        if (status != 0 and latest.kind == "deliver") or status == 1:
            if self.settle_from_receipts(row, subs, client):
                return 1
            # Our transaction may still be mined later; it will revert with AlreadyProcessed.
            with self.store.transaction():
                for sub in subs:
                    self.store.close_submission(sub.id, "dropped", error="destination status already set")
                if row.state == "submitted":
                    self.settle_status(row, status, "other")
                elif row.state == "failed" and status == 1:
                    self.store.mark_delivered(row.id, "other")
                    self.report("delivered", id=row.id, by="other")
            return 1
        if row.state != "submitted" and latest.kind == "deliver":
            # The message moved on without these submissions; still, one of them may have been mined.
            receipts = client.receipts([s.tx_hash for s in subs])
            mined = next(((s, r) for s, r in zip(subs, receipts, strict=True) if r is not None), None)
            if mined is not None and from_hex(mined[1].get("status", "0x0")) == 1:
                with self.store.transaction():
                    self.settle_receipt(row, mined[0], mined[1], subs)
                return 1
            with self.store.transaction():
                for sub in subs:
                    if mined is not None and sub.id == mined[0].id:
                        block = from_hex(mined[1].get("blockNumber", "0x0"))
                        self.store.close_submission(sub.id, "reverted", block_number=block)
                    else:
                        self.store.close_submission(sub.id, "dropped", error=f"message is {row.state}")
            return 0
        confirmed = client.transaction_count(latest.account, "latest")
        if confirmed > latest.account_nonce:
            if self.settle_from_receipts(row, subs, client):
                return 1
            self.drop(row, subs, f"account nonce {latest.account_nonce} was used by another transaction")
            return 0
        try:
            client.send_raw(latest.raw_tx)
        except RpcError as error:
            self.store.note_broadcast_attempt(latest.id, error.message)
            if any(marker in error.message.lower() for marker in NONCE_TOO_LOW):
                # The nonce was consumed since we read it: by one of our own transactions (mined just now) or
                # by another one. Only the receipts tell which.
                self.nonces.pop(latest.chain_id, None)
                if self.settle_from_receipts(row, subs, client):
                    return 1
                self.drop(row, subs, f"account nonce {latest.account_nonce} was used by another transaction")
                return 0
            self.report("rebroadcast-failed", id=row.id, tx_hash=hex_id(latest.tx_hash), error=error.message)
            return 0
        self.store.mark_broadcast(latest.id)
        self.report("rebroadcast", id=row.id, tx_hash=hex_id(latest.tx_hash), account_nonce=latest.account_nonce)
        return 0

    # ------------------------------------------------------------------ 2. scan

    def scan(self) -> int:
        """Scans every source chain up to its safe head; returns how many new messages were found."""
        found_total = 0
        for client in self.clients.values():
            if not self.chain_up(client.chain_id):
                continue
            try:
                found_total += self.scan_chain(client)
                self.chain_answered(client.chain_id)
            except (BridgeError, RpcError) as error:
                self.chain_failed(client.chain_id, error)
        return found_total

    def scan_chain(self, client: ChainClient) -> int:
        """Scans one source chain from its cursor up to its safe head."""
        found_total = 0
        chain = client.config
        safe_head = client.safe_head()
        start = self.store.cursor(chain.chain_id)
        if start is None:
            start = chain.start_block
        while start <= safe_head:
            end = min(safe_head, start + chain.max_block_range - 1)
            logs = client.get_logs(start, end, [hexbytes(MESSAGE_SENT_TOPIC)])
            found = [sent for sent in (self.accept_log(client, log) for log in logs) if sent is not None]
            new = self.store.record_scan(
                chain.chain_id,
                found,
                end + 1,
                before_commit=lambda: failpoints.reach("relayer.before-cursor-commit"),
            )
            new_set = set(new)
            for sent in found:
                if hex_id(sent.id) in new_set:
                    self.report(
                        "seen",
                        id=hex_id(sent.id),
                        src_chain_id=sent.message.src_chain_id,
                        dst_chain_id=sent.message.dst_chain_id,
                        nonce=sent.message.nonce,
                        block=sent.block_number,
                    )
            found_total += len(new)
            start = end + 1
        return found_total

    def accept_log(self, client: ChainClient, log: dict[str, Any]) -> SentLog | None:
        """The message of a `MessageSent` log when it is for a configured destination, else None (reported)."""
        chain = client.config
        try:
            sent = decode_message_sent(log)
        except MessageDecodeError as error:
            self.report("ignored", chain_id=chain.chain_id, tx_hash=log.get("transactionHash"), reason=str(error))
            return None
        message = sent.message
        reason = None
        if sent.address != chain.relay or message.src_relay != chain.relay or message.src_chain_id != chain.chain_id:
            reason = "not from this chain's relay"
        elif message.message_id() != sent.id:
            reason = "the message does not hash to its id"
        else:
            destination = self.config.chain(message.dst_chain_id)
            if destination is None or destination.chain_id == chain.chain_id:
                reason = f"destination chain {message.dst_chain_id} is not configured"
            elif destination.relay != message.dst_relay:
                reason = f"destination relay {message.dst_relay} is not the configured {destination.relay}"
        if reason is not None:
            self.report("ignored", id=hex_id(sent.id), chain_id=chain.chain_id, reason=reason)
            return None
        return sent

    # ------------------------------------------------------------------ 3. signatures

    def collect(self, rows: list[MessageRow]) -> dict[str, bytes]:
        """The signatures blob for each message of `rows` that has a quorum of current validators (signatures
        found in the store are checked, then kept in the database, all in one transaction)."""
        ready: dict[str, bytes] = {}
        stored = self.store.signatures_of([row.id for row in rows])
        with self.store.transaction():
            for row in rows:
                vset = self.validator_set(row.message.dst_chain_id)
                have = {v: s for v, s in stored[row.id].items() if v in vset.members}
                if len(have) < vset.threshold:
                    digest = row.message.delivery_digest()
                    fresh: dict[str, bytes] = {}
                    for validator in vset.validators:
                        if validator in have:
                            continue
                        signature = read_signature(self.config.signature_store, validator, row.id, digest)
                        if signature is not None:
                            fresh[validator] = signature
                    if fresh:
                        self.store.add_signatures(row.id, fresh)
                        have.update(fresh)
                if len(have) >= vset.threshold:
                    signers = sorted(have, key=lambda address: int(address, 16))[: vset.threshold]
                    ready[row.id] = b"".join(have[signer] for signer in signers)
        return ready

    # ------------------------------------------------------------------ 4. deliver

    def lane_open(self, row: MessageRow, now: float) -> bool:
        return self.lane_wait.get((row.message.src_chain_id, row.message.dst_chain_id), 0.0) <= now

    def deliver_ready(self) -> tuple[int, int]:
        """Submits every ready message, each lane in nonce order; returns (submitted, waiting for signatures).

        Estimates are batched per destination; every transaction of the pass is signed with the next local
        nonce and all are recorded in ONE database transaction before the first is broadcast."""
        now = self.clock()
        due = [row for row in self.store.due(now) if self.lane_open(row, now)]
        for chain_id in sorted({row.message.dst_chain_id for row in due}):
            if not self.chain_up(chain_id):
                continue
            try:
                self.validator_set(chain_id)
            except (BridgeError, RpcError) as error:
                self.chain_failed(chain_id, error)
        due = [row for row in due if row.message.dst_chain_id in self._validator_sets]
        if not due:
            return 0, 0
        ready = self.collect(due)
        waiting = len(due) - len(ready)
        abi = relay_abi()
        candidates = [
            (row, abi.encode("deliver", row.message.as_tuple(), ready[row.id])) for row in due if row.id in ready
        ]
        by_chain: dict[int, list[tuple[MessageRow, bytes]]] = {}
        for row, data in candidates:
            by_chain.setdefault(row.message.dst_chain_id, []).append((row, data))
        submitted = 0
        for chain_id, items in by_chain.items():
            try:
                submitted += self.deliver_on(chain_id, items[:MAX_DELIVERIES_PER_PASS])
                self.chain_answered(chain_id)
            except (BridgeError, RpcError) as error:
                self.chain_failed(chain_id, error)
        return submitted, waiting

    def deliver_on(self, chain_id: int, items: list[tuple[MessageRow, bytes]]) -> int:
        """Estimates, signs, records, then broadcasts the deliveries of `items` (lane and nonce order) on one
        destination chain; returns how many were broadcast."""
        client = self.client(chain_id)
        # The rate limit (per source chain) as of the latest block, less our deliveries not mined yet: the
        # estimates below cannot see each other, so this keeps a pass from sending more than the bucket holds.
        in_flight = self.store.open_deliveries(chain_id)
        budget: dict[int, int] = {}
        for src in sorted({row.message.src_chain_id for row, _ in items}):
            available = rate_limit_tokens(client, src)
            budget[src] = available - in_flight.get(src, 0) if available > 0 else len(items)
        estimates = estimate_deliveries(client, self.address, [data for _, data in items])
        # An estimate is no proof: AlreadyProcessed is believed only from messageStatus at the latest block.
        processed = [
            row.id
            for (row, _), estimate in zip(items, estimates, strict=True)
            if isinstance(estimate, RevertError) and estimate.name == "AlreadyProcessed"
        ]
        statuses = dict(zip(processed, client.message_statuses([unhex(i) for i in processed]), strict=True))
        plans: list[tuple[MessageRow, bytes, int, int, bytes, bytes]] = []
        nonce = self.next_nonce(chain_id)
        now = self.clock()
        for (row, data), estimate in zip(items, estimates, strict=True):
            if not self.lane_open(row, now):
                continue
            src = row.message.src_chain_id
            if budget[src] <= 0:
                continue  # stays due: tried again once the tokens in flight are spent or refilled
            budget[src] -= 1
            if isinstance(estimate, RevertError):
                self.handle_revert(row, estimate, (row.message.src_chain_id, chain_id), statuses.get(row.id))
                continue
            self._unconfirmed_processed.pop(row.id, None)
            gas = estimate + estimate * GAS_MARGIN_PERCENT // 100
            raw, tx_hash = self.sign_transaction(chain_id, data, gas, nonce)
            plans.append((row, data, gas, nonce, raw, tx_hash))
            nonce += 1
        if not plans:
            return 0
        with self.store.transaction():
            submission_ids = [
                self.store.record_submission(
                    row.id,
                    kind="deliver",
                    chain_id=chain_id,
                    account=self.address,
                    account_nonce=plan_nonce,
                    tx_hash=tx_hash,
                    raw_tx=raw,
                    gas=gas,
                )
                for row, _, gas, plan_nonce, raw, tx_hash in plans
            ]
        broadcast: list[int] = []
        refused = False
        try:
            for (row, _, gas, plan_nonce, raw, tx_hash), submission_id in zip(plans, submission_ids, strict=True):
                failpoints.reach("relayer.after-submission-recorded")
                if refused:
                    # Never broadcast: its nonce would follow a gap. Safe to drop and queue again.
                    with self.store.transaction():
                        self.store.close_submission(
                            submission_id, "rejected", error="not sent: an earlier transaction was refused"
                        )
                        self.store.requeue(row.id)
                    continue
                try:
                    client.send_raw(raw)
                except RpcError as error:
                    # The node did not take it (a new transaction, not a rebroadcast): nothing to look up.
                    refused = True
                    self.nonces.pop(chain_id, None)
                    self._fees.pop(chain_id, None)
                    with self.store.transaction():
                        self.store.close_submission(submission_id, "rejected", error=error.message)
                        if any(marker in error.message.lower() for marker in NONCE_TOO_LOW):
                            self.store.requeue(row.id, error.message)
                            self.report("requeued", id=row.id, reason=error.message)
                        else:
                            self.record_failure(row, f"node refused the transaction: {error.message}")
                    continue
                broadcast.append(submission_id)
                self.nonces[chain_id] = plan_nonce + 1
                failpoints.reach("relayer.after-broadcast")
                self.report(
                    "submitted",
                    id=row.id,
                    kind="deliver",
                    tx_hash=hex_id(tx_hash),
                    account_nonce=plan_nonce,
                    gas=gas,
                    nonce=row.message.nonce,
                )
        except BridgeError:
            # Unknown whether the last one left: what is recorded and not settled is checked at once next pass.
            self.recheck.add(chain_id)
            self.nonces.pop(chain_id, None)
            raise
        finally:
            self.store.mark_broadcast_many(broadcast)
        return len(broadcast)

    def submit(self, row: MessageRow, client: ChainClient, data: bytes, gas: int, *, kind: str) -> bool:
        """Signs, records, then broadcasts one transaction (used by `retry`). False when the node refused it."""
        chain_id = client.chain_id
        nonce = self.next_nonce(chain_id)
        raw, tx_hash = self.sign_transaction(chain_id, data, gas, nonce)
        submission_id = self.store.record_submission(
            row.id,
            kind=kind,
            chain_id=chain_id,
            account=self.address,
            account_nonce=nonce,
            tx_hash=tx_hash,
            raw_tx=raw,
            gas=gas,
        )
        failpoints.reach("relayer.after-submission-recorded")
        try:
            client.send_raw(raw)
        except RpcError as error:
            self.nonces.pop(chain_id, None)
            self.store.close_submission(submission_id, "rejected", error=error.message)
            self.report("refused", id=row.id, kind=kind, error=error.message)
            return False
        self.nonces[chain_id] = nonce + 1
        self.store.mark_broadcast(submission_id)
        failpoints.reach("relayer.after-broadcast")
        self.report(
            "submitted",
            id=row.id,
            kind=kind,
            tx_hash=hex_id(tx_hash),
            account_nonce=nonce,
            gas=gas,
            nonce=row.message.nonce,
        )
        return True

    def handle_revert(
        self, row: MessageRow, error: RevertError, lane: tuple[int, int], status: int | None = None
    ) -> None:
        """A delivery's estimate reverted: decide from the custom error. For AlreadyProcessed, `status` is the
        message's `messageStatus` at the latest block (read here when not given): only that settles it."""
        name = error.name
        args = error.decoded.args if error.decoded else {}
        if name == "AlreadyProcessed":
            if status is None:
                status = self.client(lane[1]).message_statuses([unhex(row.id)])[0]
            if status != 0:
                self._unconfirmed_processed.pop(row.id, None)
                self.settle_status(row, status, "other")
                return
            # The estimate ran on a state where it was processed (a transaction not mined yet, another relayer's
            # perhaps, or a node ahead of the one that answered the status): nothing is settled. Wait and
            # estimate again, without counting an attempt; if that transaction is dropped, we deliver it.
            waits = self._unconfirmed_processed.get(row.id, 0) + 1
            self._unconfirmed_processed[row.id] = waits
            delay = backoff_delay(waits, self.settings.backoff_initial, self.settings.backoff_max)
            until = self.clock() + delay
            reason = f"{error.description}, but its status at the latest block is None: estimating again"
            self.store.defer(row.id, until, reason)
            self.report("deferred", id=row.id, reason=reason, delay=round(delay, 3), next_attempt_at=round(until, 3))
        elif name == "RateLimited":
            wait = float(args.get("retryAfter", 1))
            until = self.clock() + wait
            self.lane_wait[lane] = until
            self.store.defer(row.id, until, error.description)
            self.report("rate-limited", id=row.id, retry_after=wait, next_attempt_at=round(until, 3))
        elif name in PERMANENT_ERRORS:
            self.store.park(row.id, row.attempts + 1, error.description)
            self.report("parked", id=row.id, attempts=row.attempts + 1, reason=error.description)
        elif name == "EnforcedPause":
            self.record_failure(row, "the destination relay is paused (EnforcedPause)")
            refreshed = self.store.message(row.id)
            if refreshed is not None and refreshed.next_attempt_at is not None:
                self.lane_wait[lane] = refreshed.next_attempt_at
        else:
            if name in ("NotValidator", "TooFewSignatures", "InvalidSignature", "SignersNotAscending"):
                self._validator_sets.pop(row.message.dst_chain_id, None)
            self.record_failure(row, error.description)

    # ------------------------------------------------------------------ passes

    def pass_once(self) -> PassResult:
        self._fees.clear()
        self._validator_sets.clear()
        self.pass_errors = []
        self.check_chains()
        result = PassResult()
        result.settled += self.check_submissions()
        result.seen = self.scan()
        result.submitted, result.waiting_signatures = self.deliver_ready()
        return result

    def waiting_submissions(self, message_id: str | None = None) -> bool:
        """Whether an open submission (of `message_id`, or any) is on a chain that answered since its last
        failure: on a chain that is down, nobody waits for receipts."""
        return any(
            self.chain_trusted(sub.chain_id) and (message_id is None or sub.message_id == message_id)
            for sub in self.store.open_submissions()
        )

    def wait_for_receipts(self, timeout: float, stop: threading.Event, message_id: str | None = None) -> int:
        """Polls open submissions (of `message_id`, or all) until none is left on a chain that answers, or
        `timeout` passes; returns how many settled."""
        deadline = self.clock() + timeout
        settled = 0
        while self.waiting_submissions(message_id) and self.clock() < deadline and not stop.is_set():
            settled += self.check_submissions(message_id=message_id)
            if self.waiting_submissions(message_id):
                stop.wait(0.05)
        return settled

    def run(self, *, once: bool, stop: threading.Event, on_pass: Callable[[PassResult], None] | None = None) -> None:
        """Passes until `stop` is set; with `once`, one pass and the wait for its receipts."""
        interval = min(chain.poll_interval for chain in self.config.chains)
        failures = 0
        while not stop.is_set():
            try:
                result = self.pass_once()
                if once:
                    errors = list(self.pass_errors)
                    result.settled += self.wait_for_receipts(self.settings.receipt_timeout, stop)
                    # A backlog larger than one pass's batch: keep delivering until nothing more is sent.
                    while result.submitted and not stop.is_set():
                        more = self.pass_once()
                        errors += self.pass_errors
                        more.settled += self.wait_for_receipts(self.settings.receipt_timeout, stop)
                        result.seen += more.seen
                        result.settled += more.settled
                        result.waiting_signatures = more.waiting_signatures
                        if not more.submitted:
                            break
                        result.submitted += more.submitted
                    if errors:  # a chain did not answer: what could be done was done, the run still failed
                        raise BridgeError(errors[0])
                failures = 0
            except ChainMisconfigured:
                raise
            except (BridgeError, RpcError) as error:
                if once:
                    raise
                failures += 1
                delay = backoff_delay(failures, self.settings.backoff_initial, self.settings.backoff_max)
                self.recheck.update(self.clients)
                self.nonces.clear()
                self.report("error", error=str(error), retry_in=round(delay, 3))
                stop.wait(delay)
                continue
            if on_pass is not None:
                on_pass(result)
            if once:
                return
            if not result.progress:
                stop.wait(interval)
            elif self.store.open_submissions():
                stop.wait(min(interval, 0.05))

"""CrossChainRelay on real local chains: anvil processes with chain ids 1001, 1002 (and 1003), real
transactions and receipts, signatures made with eth-account's EIP-712 encoder (not the node's code), revert
reasons read from the mined transactions (anvil's call tracer) and decoded by selector from the ABI.

The forge suite covers the same contract under vm.chainId; this one proves the domains, ids and signatures
line up across separate chains.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from bridge_helpers import (
    CALL_RESERVE,
    CHAIN_A_ID,
    CHAIN_B_ID,
    CHAIN_C_ID,
    MESSAGE_VERSION,
    MODE_ACCEPT,
    MODE_BURN_GAS,
    MODE_REENTER,
    MODE_RETURN_BOMB,
    MODE_REVERT,
    MODE_REVERT_BOMB,
    STATUS_DELIVERED,
    STATUS_FAILED,
    STATUS_NONE,
    RelaySide,
    RelayStack,
    build_relay_stack,
    call_trace,
    delivery_digest,
    deploy_recipient,
    deploy_relay,
    deploy_relay_at,
    encode_error,
    expect_revert,
    increase_time,
    make_validators,
    malleate,
    message_id,
    message_tuple,
    receipt_events,
    recover_signer,
    rpc,
    sent_message,
    sign_delivery,
    signature_of,
    subcalls_to,
    fixed_key,
    transact,
    with_changes,
)
from conftest import ChainPair
from thingledger_bridge.devnet import LocalChain
from web3 import Web3

MAX_RETURN_BYTES = 256
TOKEN_UNITS = 3_600  # a rate-limit token in the bucket's units


def deliver_call(side: RelaySide, message: dict[str, Any], signatures: bytes) -> Any:
    return side.relay.functions.deliver(message_tuple(message), signatures)


def expect_deliver_revert(
    stack: RelayStack, message: dict[str, Any], signatures: bytes, error: str, *args: Any, gas: int = 3_000_000
) -> Any:
    """`deliver` on the message's destination reverts with `error(args)`; nothing changed there."""
    destination = stack.side(message["dstChainId"])
    before = destination.status(message_id(message))
    reverted = expect_revert(
        destination.web3, destination.relay, deliver_call(destination, message, signatures), destination.relayer,
        error, *args, gas=gas,
    )
    assert destination.status(message_id(message)) == before
    return reverted


@pytest.fixture
def stranger(chains: ChainPair) -> str:
    return chains.b.accounts[5]


# ---------------------------------------------------------------------------------------------- happy path


def test_a_message_crosses_both_ways_with_its_id_and_digest_computed_independently(relay_stack: RelayStack) -> None:
    stack = relay_stack
    for src, dst in ((stack.a, stack.b), (stack.b, stack.a)):
        nonce = src.relay.functions.nextNonce().call()
        first_id, first = stack.send(src, dst, payload=b"first", gas_limit=150_000)
        second_id, second = stack.send(src, dst, payload=b"second \x00\xff", gas_limit=150_000)
        assert first == {
            "version": MESSAGE_VERSION,
            "nonce": nonce,
            "srcChainId": src.chain_id,
            "srcRelay": src.relay.address,
            "sender": src.sender,
            "dstChainId": dst.chain_id,
            "dstRelay": dst.relay.address,
            "recipient": dst.recipient.address,
            "gasLimit": 150_000,
            "payload": b"first",
        }
        assert second["nonce"] == nonce + 1
        # The id is the EIP-712 hash in the source domain; the digest the one in the destination domain.
        assert first_id == message_id(first) == src.relay.functions.messageId(message_tuple(first)).call()
        assert dst.relay.functions.deliveryDigest(message_tuple(first)).call() == delivery_digest(first)
        assert delivery_digest(first) != first_id

        received_before = dst.recipient.functions.received().call()
        for id_, message in ((first_id, first), (second_id, second)):
            assert dst.status(id_) == STATUS_NONE
            receipt = stack.deliver(message)
            events = receipt_events(dst.relay, "MessageDelivered", receipt)
            assert [(e["args"]["id"], e["args"]["srcChainId"], e["args"]["recipient"]) for e in events] == [
                (id_, src.chain_id, dst.recipient.address)
            ]
            assert dst.status(id_) == STATUS_DELIVERED
            assert dst.recipient.functions.timesReceived(id_).call() == 1
            assert dst.recipient.functions.lastId().call() == id_
            assert dst.recipient.functions.lastSrcChainId().call() == src.chain_id
            assert dst.recipient.functions.lastSender().call() == src.sender
            assert dst.recipient.functions.lastPayload().call() == message["payload"]
        assert dst.recipient.functions.received().call() == received_before + 2
        # Nothing was delivered on the source chain.
        assert src.status(first_id) == STATUS_NONE


def test_all_three_validators_signing_is_accepted_too(relay_stack: RelayStack) -> None:
    id_, message = relay_stack.send(relay_stack.a, relay_stack.b, payload=b"three")
    relay_stack.deliver(message, relay_stack.sign(message, relay_stack.validators))
    assert relay_stack.b.status(id_) == STATUS_DELIVERED


def test_only_allowed_senders_may_send(chains: ChainPair, stranger: str) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    b = stack.b
    send = b.relay.functions.send(CHAIN_A_ID, stack.a.recipient.address, 100_000, b"hi")
    expect_revert(b.web3, b.relay, send, stranger, "SenderNotAllowed", stranger)
    expect_revert(
        b.web3, b.relay, b.relay.functions.setSenderAllowed(stranger, True), stranger,
        "OwnableUnauthorizedAccount", stranger,
    )
    b.allow_sender(stranger)
    assert b.relay.functions.isSenderAllowed(stranger).call() is True
    id_, message = sent_message(b.relay, transact(b.web3, send, stranger))
    assert message["sender"] == stranger and id_ == message_id(message)
    b.allow_sender(stranger, False)
    expect_revert(b.web3, b.relay, send, stranger, "SenderNotAllowed", stranger)
    # The relay cannot be left without an owner.
    expect_revert(b.web3, b.relay, b.relay.functions.renounceOwnership(), b.owner, "RenounceDisabled")
    assert b.relay.functions.owner().call() == b.owner


# ---------------------------------------------------------------------------------------------- signatures


def test_a_forged_signature_is_refused(relay_stack: RelayStack) -> None:
    stack = relay_stack
    id_, message = stack.send(stack.a, stack.b, payload=b"forged")
    forger = fixed_key("forger")
    valid = signature_of(message, stack.validators[1])
    # The forger's signature first: refused at index 0 whatever the address order.
    expect_deliver_revert(stack, message, signature_of(message, forger) + valid, "NotValidator", 0, forger.address)
    # A validator's signature of the message in the SOURCE domain (its id) is not a delivery signature.
    wrong_domain = signature_of(message, stack.validators[0], chain_id=CHAIN_A_ID, relay=stack.a.relay.address)
    expect_deliver_revert(
        stack, message, wrong_domain + valid, "NotValidator", 0, recover_signer(message, wrong_domain)
    )
    # A validator's signature of another message.
    _, other = stack.send(stack.a, stack.b, payload=b"other")
    borrowed = signature_of(other, stack.validators[0])
    expect_deliver_revert(stack, message, borrowed + valid, "NotValidator", 0, recover_signer(message, borrowed))
    assert stack.b.logs("MessageDelivered", id_) == []
    stack.deliver(message)
    assert stack.b.status(id_) == STATUS_DELIVERED


@pytest.mark.parametrize(
    "field,value",
    [
        ("payload", b"tampered"),
        ("recipient", "0x000000000000000000000000000000000000dEaD"),
        ("gasLimit", 1_000_000),
        ("gasLimit", 21_000),
        ("nonce", 10**9),
        ("sender", "0x000000000000000000000000000000000000bEEF"),
    ],
)
def test_a_tampered_message_is_refused(relay_stack: RelayStack, field: str, value: Any) -> None:
    stack = relay_stack
    id_, message = stack.send(stack.a, stack.b, payload=b"original")
    signatures = stack.sign(message)
    tampered = with_changes(message, **{field: value})
    # The signatures recover to unrelated addresses for the tampered message.
    expect_deliver_revert(
        stack, tampered, signatures, "NotValidator", 0, recover_signer(tampered, signatures[:65])
    )
    assert stack.b.status(message_id(tampered)) == STATUS_NONE
    stack.deliver(message, signatures)
    assert stack.b.status(id_) == STATUS_DELIVERED


def test_fewer_signatures_than_the_threshold_are_refused(relay_stack: RelayStack) -> None:
    stack = relay_stack
    _, message = stack.send(stack.a, stack.b)
    expect_deliver_revert(stack, message, b"", "TooFewSignatures", 0, 2)
    for validator in stack.validators:
        expect_deliver_revert(stack, message, signature_of(message, validator), "TooFewSignatures", 1, 2)


def test_duplicate_and_unsorted_signers_are_refused(relay_stack: RelayStack) -> None:
    stack = relay_stack
    _, message = stack.send(stack.a, stack.b)
    low, middle, high = (signature_of(message, validator) for validator in stack.validators)
    expect_deliver_revert(stack, message, low + low, "SignersNotAscending", 1)
    expect_deliver_revert(stack, message, high + middle, "SignersNotAscending", 1)
    expect_deliver_revert(stack, message, low + high + middle, "SignersNotAscending", 2)
    expect_deliver_revert(stack, message, low + middle + middle, "SignersNotAscending", 2)
    expect_deliver_revert(stack, message, low + middle + low, "SignersNotAscending", 2)
    stack.deliver(message, low + high)


def test_malleated_short_and_malformed_signatures_are_refused(relay_stack: RelayStack) -> None:
    stack = relay_stack
    id_, message = stack.send(stack.a, stack.b)
    low, middle, _ = (signature_of(message, validator) for validator in stack.validators)
    high_s = malleate(low)
    # The malleated form is the same signer's, as far as plain ecrecover is concerned.
    assert recover_signer(message, high_s) == stack.validators[0].address
    expect_deliver_revert(stack, message, high_s + middle, "InvalidSignature", 0)
    expect_deliver_revert(stack, message, low + malleate(middle), "InvalidSignature", 1)
    expect_deliver_revert(stack, message, low[:64] + middle, "MalformedSignatures", 129)
    expect_deliver_revert(stack, message, low + middle + b"\x1b", "MalformedSignatures", 131)
    expect_deliver_revert(stack, message, (low + middle) * 17, "MalformedSignatures", 65 * 34)
    bad_v = low[:64] + bytes([1])
    expect_deliver_revert(stack, message, bad_v + middle, "InvalidSignature", 0)
    zero_r = bytes(32) + low[32:]
    expect_deliver_revert(stack, message, zero_r + middle, "InvalidSignature", 0)
    stack.deliver(message, low + middle)
    assert stack.b.status(id_) == STATUS_DELIVERED


# ---------------------------------------------------------------------------------------------- replay


def test_replay_on_the_same_chain_is_refused(relay_stack: RelayStack) -> None:
    stack = relay_stack
    id_, message = stack.send(stack.a, stack.b)
    signatures = stack.sign(message)
    stack.deliver(message, signatures)
    expect_deliver_revert(stack, message, signatures, "AlreadyProcessed", id_, STATUS_DELIVERED)
    # Other signers do not make it a new message.
    expect_deliver_revert(
        stack, message, stack.sign(message, stack.validators), "AlreadyProcessed", id_, STATUS_DELIVERED
    )
    assert len(stack.b.logs("MessageDelivered", id_)) == 1
    assert stack.b.recipient.functions.timesReceived(id_).call() == 1


def test_replay_onto_a_third_chain_is_refused(chains: ChainPair, third_chain: LocalChain) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    # Chain 1003's relay has the very address of chain 1002's: only the chain id tells their domains apart.
    relay_c = deploy_relay_at(third_chain, stack.b.relay.address, [v.address for v in stack.validators], 2)
    owner = third_chain.accounts[0]
    transact(third_chain.web3, relay_c.functions.setRemote(CHAIN_A_ID, stack.a.relay.address, 100, 100), owner)
    transact(stack.a.web3, stack.a.relay.functions.setRemote(CHAIN_C_ID, relay_c.address, 100, 100), stack.a.owner)
    recipient_c = deploy_recipient(third_chain, relay_c.address, [(CHAIN_A_ID, stack.a.sender)], deployer=owner)
    side_c = RelaySide(third_chain, relay_c, recipient_c, owner, *third_chain.accounts[1:4])
    stack.extra[CHAIN_C_ID] = side_c

    id_, message = stack.send(stack.a, stack.b, payload=b"for chain 1002")
    signatures = stack.sign(message)
    # As sent: chain 1003 is not its destination, though the relay address matches.
    assert message["dstRelay"] == relay_c.address
    expect_revert(
        third_chain.web3, relay_c, deliver_call(side_c, message, signatures), side_c.relayer,
        "WrongDestination", CHAIN_B_ID, relay_c.address,
    )
    # Re-addressed to chain 1003: the signatures were made in chain 1002's domain.
    readdressed = with_changes(message, dstChainId=CHAIN_C_ID)
    expect_revert(
        third_chain.web3, relay_c, deliver_call(side_c, readdressed, signatures), side_c.relayer,
        "NotValidator", 0, recover_signer(readdressed, signatures[:65]),
    )
    assert side_c.status(id_) == STATUS_NONE and side_c.status(message_id(readdressed)) == STATUS_NONE
    # Chain 1003's relay works: a message really sent to it is delivered there (with signatures in its own
    # domain, which differ from chain 1002's for the same message), and the original still is on chain 1002.
    own_id, own = stack.send(stack.a, side_c, payload=b"for chain 1003")
    assert delivery_digest(own) != delivery_digest(own, chain_id=CHAIN_B_ID)
    stack.deliver(own)
    assert side_c.status(own_id) == STATUS_DELIVERED
    assert recipient_c.functions.timesReceived(own_id).call() == 1
    stack.deliver(message, signatures)
    assert stack.b.status(id_) == STATUS_DELIVERED


def test_replay_onto_a_second_relay_on_the_same_chain_is_refused(chains: ChainPair) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    b = stack.b
    second = deploy_relay(chains.b, [v.address for v in stack.validators], 2, owner=b.owner, guardian=b.guardian)
    transact(b.web3, second.functions.setRemote(CHAIN_A_ID, stack.a.relay.address, 100, 100), b.owner)
    id_, message = stack.send(stack.a, stack.b)
    signatures = stack.sign(message)
    expect_revert(
        b.web3, second, second.functions.deliver(message_tuple(message), signatures), b.relayer,
        "WrongDestination", CHAIN_B_ID, b.relay.address,
    )
    readdressed = with_changes(message, dstRelay=second.address)
    expect_revert(
        b.web3, second, second.functions.deliver(message_tuple(readdressed), signatures), b.relayer,
        "NotValidator", 0, recover_signer(readdressed, signatures[:65]),
    )
    assert second.functions.messageStatus(id_).call() == STATUS_NONE
    stack.deliver(message, signatures)
    assert b.status(id_) == STATUS_DELIVERED


def test_an_untrusted_source_relay_is_refused(chains: ChainPair) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    a, b = stack.a, stack.b
    # A relay on chain 1001 that chain 1002 does not trust, with the same validators (who would sign its
    # messages): its messages are refused however well signed.
    rogue = deploy_relay(chains.a, [v.address for v in stack.validators], 2, owner=a.owner, guardian=a.guardian)
    transact(a.web3, rogue.functions.setRemote(CHAIN_B_ID, b.relay.address, 100, 100), a.owner)
    transact(a.web3, rogue.functions.setSenderAllowed(a.sender, True), a.owner)
    receipt = transact(
        a.web3, rogue.functions.send(CHAIN_B_ID, b.recipient.address, 100_000, b"rogue"), a.sender
    )
    rogue_id, rogue_message = sent_message(rogue, receipt)
    expect_deliver_revert(
        stack, rogue_message, stack.sign(rogue_message, stack.validators), "UntrustedSource", CHAIN_A_ID,
        rogue.address,
    )
    # A message claiming the trusted relay as its source but from another chain id.
    id_, message = stack.send(a, b)
    other_chain = with_changes(message, srcChainId=CHAIN_C_ID)
    expect_deliver_revert(
        stack, other_chain, stack.sign(other_chain), "UntrustedSource", CHAIN_C_ID, a.relay.address
    )
    # Once chain 1001 is removed, even its real relay's messages are refused, and its Failed ones cannot be
    # retried until it is trusted again.
    transact(b.web3, b.recipient.functions.setMode(MODE_REVERT), b.owner)
    failed_id, failed = stack.send(a, b)
    stack.deliver(failed)
    transact(b.web3, b.recipient.functions.setMode(MODE_ACCEPT), b.owner)
    transact(b.web3, b.relay.functions.removeRemote(CHAIN_A_ID), b.owner)
    expect_deliver_revert(stack, message, stack.sign(message), "UntrustedSource", CHAIN_A_ID, a.relay.address)
    retry = b.relay.functions.retry(message_tuple(failed), failed["gasLimit"])
    expect_revert(b.web3, b.relay, retry, b.relayer, "UntrustedSource", CHAIN_A_ID, a.relay.address)
    assert b.status(rogue_id) == STATUS_NONE and b.status(id_) == STATUS_NONE
    assert b.status(failed_id) == STATUS_FAILED
    transact(b.web3, b.relay.functions.setRemote(CHAIN_A_ID, a.relay.address, 10, 10), b.owner)
    transact(b.web3, retry, b.relayer)
    stack.deliver(message)
    assert b.status(failed_id) == STATUS_DELIVERED and b.status(id_) == STATUS_DELIVERED


# ---------------------------------------------------------------------------------------------- recipients


def test_a_reverting_recipient_fails_the_message_without_holding_up_others_and_retry_delivers_it(
    relay_stack: RelayStack,
) -> None:
    stack = relay_stack
    b = stack.b
    recipient = b.deploy_recipient([(CHAIN_A_ID, stack.a.sender)])
    transact(b.web3, recipient.functions.setMode(MODE_REVERT), b.owner)
    failed_id, failed = stack.send(stack.a, b, recipient.address, b"refuse me", 120_000)
    next_id, behind = stack.send(stack.a, b, payload=b"behind it")

    receipt = stack.deliver(failed)
    assert receipt["status"] == 1
    reason = encode_error(recipient, "Refused", b"refuse me")
    events = receipt_events(b.relay, "MessageFailed", receipt)
    assert [(e["args"]["id"], e["args"]["srcChainId"], e["args"]["recipient"], e["args"]["reason"]) for e in events] == [
        (failed_id, CHAIN_A_ID, recipient.address, reason)
    ]
    assert receipt_events(b.relay, "MessageDelivered", receipt) == []
    assert b.status(failed_id) == STATUS_FAILED
    # The next message on the lane is not held up.
    stack.deliver(behind)
    assert b.status(next_id) == STATUS_DELIVERED
    # Failed is processed: deliver again is refused; retry while the recipient still reverts is refused and
    # leaves it Failed.
    expect_deliver_revert(stack, failed, stack.sign(failed), "AlreadyProcessed", failed_id, STATUS_FAILED)
    expect_revert(
        b.web3, b.relay, b.relay.functions.retry(message_tuple(failed), 120_000), b.relayer,
        "RetryFailed", failed_id, reason,
    )
    expect_revert(
        b.web3, b.relay, b.relay.functions.retry(message_tuple(failed), 119_999), b.relayer,
        "RetryGasBelowMessage", 119_999, 120_000,
    )
    assert b.status(failed_id) == STATUS_FAILED
    # Fixed: anyone's retry delivers it, once.
    transact(b.web3, recipient.functions.setMode(MODE_ACCEPT), b.owner)
    stranger = b.chain.accounts[6]
    receipt = transact(b.web3, b.relay.functions.retry(message_tuple(failed), 150_000), stranger)
    assert [e["args"]["id"] for e in receipt_events(b.relay, "MessageDelivered", receipt)] == [failed_id]
    assert b.status(failed_id) == STATUS_DELIVERED
    assert recipient.functions.timesReceived(failed_id).call() == 1
    assert recipient.functions.lastPayload().call() == b"refuse me"
    expect_revert(
        b.web3, b.relay, b.relay.functions.retry(message_tuple(failed), 150_000), stranger,
        "NotFailed", failed_id, STATUS_DELIVERED,
    )
    assert len(b.logs("MessageDelivered", failed_id)) == 1
    assert len(b.logs("MessageFailed", failed_id)) == 1


def test_a_recipient_without_code_fails_the_message(relay_stack: RelayStack) -> None:
    stack = relay_stack
    nobody = Web3.to_checksum_address("0x00000000000000000000000000000000000c0de5")
    id_, message = stack.send(stack.a, stack.b, nobody, b"", 50_000)
    receipt = stack.deliver(message)
    events = receipt_events(stack.b.relay, "MessageFailed", receipt)
    assert [e["args"]["reason"] for e in events] == [encode_error(stack.b.relay, "RecipientNotContract", nobody)]
    assert stack.b.status(id_) == STATUS_FAILED


def test_an_under_gassed_delivery_reverts_instead_of_failing_the_message(relay_stack: RelayStack) -> None:
    stack = relay_stack
    b = stack.b
    burner = b.deploy_recipient([(CHAIN_A_ID, stack.a.sender)])
    transact(b.web3, burner.functions.setMode(MODE_BURN_GAS), b.owner)
    gas_limit = 1_000_000
    required = gas_limit + gas_limit // 63 + CALL_RESERVE
    id_, message = stack.send(stack.a, b, burner.address, b"burn", gas_limit)
    signatures = stack.sign(message)
    call = deliver_call(b, message, signatures)
    estimate = call.estimate_gas({"from": b.relayer})
    assert estimate > required
    # A margin around the estimate: the relay's own cost moves by a few dozen gas with the block's timestamp
    # (whether the bucket's refill is capped), and blocks pass between these transactions. forge's unit test
    # pins the exact boundary.
    for gas in (estimate - 1_000, estimate - 100_000, required):
        reverted = expect_deliver_revert(stack, message, signatures, "InsufficientGas", gas=gas)
        available, needed = reverted.error.args
        assert needed == required and available < required
        assert b.status(id_) == STATUS_NONE
    assert b.logs("MessageFailed", id_) == []
    # With enough gas, the recipient gets exactly its gas limit (it burns it) and the message is Failed.
    receipt = transact(b.web3, call, b.relayer, gas=call.estimate_gas({"from": b.relayer}) + 1_000)
    assert b.status(id_) == STATUS_FAILED
    frames = subcalls_to(call_trace(b.web3, receipt["transactionHash"]), burner.address)
    assert [int(frame["gas"], 16) for frame in frames] == [gas_limit]
    assert int(frames[0]["gasUsed"], 16) == gas_limit


def test_an_accepting_recipient_gets_exactly_its_gas_limit(relay_stack: RelayStack) -> None:
    stack = relay_stack
    id_, message = stack.send(stack.a, stack.b, payload=b"gas", gas_limit=345_678)
    receipt = stack.deliver(message)
    frames = subcalls_to(call_trace(stack.b.web3, receipt["transactionHash"]), stack.b.recipient.address)
    assert [int(frame["gas"], 16) for frame in frames] == [345_678]
    assert 345_678 - 10_000 < stack.b.recipient.functions.lastGasLeft().call() < 345_678
    assert stack.b.status(id_) == STATUS_DELIVERED


def test_a_recipient_that_reenters_the_relay_cannot_deliver_the_message_twice(relay_stack: RelayStack) -> None:
    stack = relay_stack
    b = stack.b
    reentrant = b.deploy_recipient([(CHAIN_A_ID, stack.a.sender)])
    transact(b.web3, reentrant.functions.setMode(MODE_REENTER), b.owner)

    # Re-entering `deliver` with the same message and valid signatures.
    id_, message = stack.send(stack.a, b, reentrant.address, b"again", 400_000)
    signatures = stack.sign(message)
    transact(b.web3, reentrant.functions.setReentry(deliver_call(b, message, signatures)._encode_transaction_data()), b.owner)
    stack.deliver(message, signatures)
    assert reentrant.functions.reentrySucceeded().call() is False
    assert reentrant.functions.reentryResult().call() == encode_error(b.relay, "AlreadyProcessed", id_, STATUS_DELIVERED)
    assert reentrant.functions.timesReceived(id_).call() == 1
    assert b.status(id_) == STATUS_DELIVERED and len(b.logs("MessageDelivered", id_)) == 1

    # Re-entering `retry` of the message being delivered.
    retry_id, retried = stack.send(stack.a, b, reentrant.address, b"retry", 400_000)
    transact(
        b.web3, reentrant.functions.setReentry(b.relay.functions.retry(message_tuple(retried), 400_000)._encode_transaction_data()),
        b.owner,
    )
    stack.deliver(retried)
    assert reentrant.functions.reentrySucceeded().call() is False
    assert reentrant.functions.reentryResult().call() == encode_error(b.relay, "NotFailed", retry_id, STATUS_DELIVERED)
    assert reentrant.functions.timesReceived(retry_id).call() == 1

    # Re-entering to deliver ANOTHER message is allowed: each is delivered once.
    other_id, other = stack.send(stack.a, b, payload=b"nested", gas_limit=100_000)
    transact(b.web3, reentrant.functions.setReentry(deliver_call(b, other, stack.sign(other))._encode_transaction_data()), b.owner)
    outer_id, outer = stack.send(stack.a, b, reentrant.address, b"outer", 600_000)
    stack.deliver(outer)
    assert reentrant.functions.reentrySucceeded().call() is True
    assert b.status(outer_id) == STATUS_DELIVERED and b.status(other_id) == STATUS_DELIVERED
    assert b.recipient.functions.timesReceived(other_id).call() == 1
    expect_deliver_revert(stack, other, stack.sign(other), "AlreadyProcessed", other_id, STATUS_DELIVERED)


def relay_overhead(side: RelaySide, receipt: Any, recipient: str) -> int:
    """Gas the delivery transaction used outside the recipient's own frame."""
    frames = subcalls_to(call_trace(side.web3, receipt["transactionHash"]), recipient)
    assert len(frames) == 1
    return int(receipt["gasUsed"]) - int(frames[0]["gasUsed"], 16)


def test_huge_return_or_revert_data_costs_the_relay_nothing_and_is_capped(relay_stack: RelayStack) -> None:
    stack = relay_stack
    b = stack.b
    overheads: dict[int, int] = {}
    reasons: dict[int, bytes] = {}
    ids: dict[int, bytes] = {}
    for mode in (MODE_ACCEPT, MODE_RETURN_BOMB, MODE_REVERT, MODE_REVERT_BOMB):
        recipient = b.deploy_recipient([(CHAIN_A_ID, stack.a.sender)])
        transact(b.web3, recipient.functions.setMode(mode), b.owner)
        id_, message = stack.send(stack.a, b, recipient.address, b"same payload", 500_000)
        receipt = stack.deliver(message)
        overheads[mode] = relay_overhead(b, receipt, recipient.address)
        failed = receipt_events(b.relay, "MessageFailed", receipt)
        reasons[mode] = bytes(failed[0]["args"]["reason"]) if failed else b""
        ids[mode] = id_
    # 100,000 returned bytes are not copied: the relay's own gas is the same as for a plain acceptance.
    assert b.status(ids[MODE_RETURN_BOMB]) == STATUS_DELIVERED
    assert abs(overheads[MODE_RETURN_BOMB] - overheads[MODE_ACCEPT]) < 200, overheads
    # 100,000 bytes of revert data: only MAX_RETURN_BYTES are kept in MessageFailed.
    assert b.status(ids[MODE_REVERT_BOMB]) == STATUS_FAILED
    assert len(reasons[MODE_REVERT_BOMB]) == MAX_RETURN_BYTES
    assert len(reasons[MODE_REVERT]) < MAX_RETURN_BYTES
    assert overheads[MODE_REVERT_BOMB] - overheads[MODE_REVERT] < 5_000, overheads


# ---------------------------------------------------------------------------------------------- administration


def test_validator_rotation(chains: ChainPair, stranger: str) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    b = stack.b
    old = stack.validators
    pending_id, pending = stack.send(stack.a, b, payload=b"signed before the rotation")
    old_signatures = stack.sign(pending, old[:2])
    newcomers = make_validators(4, "rotated")
    new_set = sorted([old[1], *newcomers], key=lambda account: int(account.address, 16))
    addresses = [validator.address for validator in new_set]

    expect_revert(
        b.web3, b.relay, b.relay.functions.setValidators(addresses, 3), stranger,
        "OwnableUnauthorizedAccount", stranger,
    )
    expect_revert(
        b.web3, b.relay, b.relay.functions.setValidators(addresses, 2), b.owner, "InvalidValidatorSet", 5, 2
    )
    expect_revert(
        b.web3, b.relay, b.relay.functions.setValidators([addresses[0], addresses[0]], 2), b.owner,
        "DuplicateValidator", addresses[0],
    )
    receipt = transact(b.web3, b.relay.functions.setValidators(addresses, 3), b.owner)
    [changed] = receipt_events(b.relay, "ValidatorSetChanged", receipt)
    assert (changed["args"]["epoch"], list(changed["args"]["validators"]), changed["args"]["threshold"]) == (
        2, addresses, 3,
    )
    assert list(b.relay.functions.validatorSet().call()) == [addresses, 3, 2]
    assert [b.relay.functions.isValidator(v.address).call() for v in old] == [False, True, False]

    # Signatures of the old set: the first signer no longer a validator is named.
    first_gone = next(index for index, validator in enumerate(old) if validator.address not in addresses)
    expect_deliver_revert(stack, pending, old_signatures, "TooFewSignatures", 2, 3)
    all_old = stack.sign(pending, old)
    expect_deliver_revert(stack, pending, all_old, "NotValidator", first_gone, old[first_gone].address)
    expect_deliver_revert(stack, pending, sign_delivery(pending, new_set[:2]), "TooFewSignatures", 2, 3)
    stack.deliver(pending, sign_delivery(pending, new_set[1:4]))
    assert b.status(pending_id) == STATUS_DELIVERED
    # The other direction still uses the old set (each relay has its own).
    back_id, back = stack.send(b, stack.a)
    stack.deliver(back, stack.sign(back, old[:2]))
    assert stack.a.status(back_id) == STATUS_DELIVERED


def test_pause_stops_send_deliver_and_retry_until_the_owner_unpauses(chains: ChainPair, stranger: str) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    a, b = stack.a, stack.b
    transact(b.web3, b.recipient.functions.setMode(MODE_REVERT), b.owner)
    failed_id, failed = stack.send(a, b)
    stack.deliver(failed)
    assert b.status(failed_id) == STATUS_FAILED
    transact(b.web3, b.recipient.functions.setMode(MODE_ACCEPT), b.owner)
    id_, message = stack.send(a, b)

    expect_revert(b.web3, b.relay, b.relay.functions.pause(), stranger, "NotGuardian", stranger)
    receipt = transact(b.web3, b.relay.functions.pause(), b.guardian)
    assert [e["args"]["account"] for e in receipt_events(b.relay, "Paused", receipt)] == [b.guardian]
    expect_deliver_revert(stack, message, stack.sign(message), "EnforcedPause")
    expect_revert(
        b.web3, b.relay, b.relay.functions.retry(message_tuple(failed), failed["gasLimit"]), b.relayer, "EnforcedPause"
    )
    expect_revert(
        b.web3, b.relay, b.relay.functions.send(CHAIN_A_ID, a.recipient.address, 100_000, b""), b.sender,
        "EnforcedPause",
    )
    expect_revert(b.web3, b.relay, b.relay.functions.unpause(), b.guardian, "OwnableUnauthorizedAccount", b.guardian)
    # The other chain's relay is not paused: it still sends to the paused one.
    queued_id, queued = stack.send(a, b, payload=b"sent while 1002 is paused")
    transact(b.web3, b.relay.functions.unpause(), b.owner)
    stack.deliver(message)
    stack.deliver(queued)
    transact(b.web3, b.relay.functions.retry(message_tuple(failed), failed["gasLimit"]), b.relayer)
    assert [b.status(x) for x in (id_, queued_id, failed_id)] == [STATUS_DELIVERED] * 3
    # The owner may pause too.
    transact(b.web3, b.relay.functions.pause(), b.owner)
    assert b.relay.functions.paused().call() is True


def bucket_after(level: int, last: int, now: int, capacity: int, refill_per_hour: int) -> int:
    """The bucket level at `now` (in 1/3600 tokens), refilled since `last` and capped."""
    return min(level + (now - last) * refill_per_hour, capacity * TOKEN_UNITS)


def block_time(side: RelaySide, receipt: Any) -> int:
    return int(side.web3.eth.get_block(receipt["blockNumber"])["timestamp"])


def test_rate_limit_then_refill(chains: ChainPair) -> None:
    capacity, refill = 2, 60  # two in a burst, then one a minute
    stack = build_relay_stack(chains.a, chains.b, capacity=capacity, refill_per_hour=refill)
    b = stack.b
    [remote_set] = b.relay.events.RemoteSet().get_logs(from_block=0, argument_filters={"chainId": CHAIN_A_ID})
    assert b.relay.functions.remote(CHAIN_A_ID).call() == (stack.a.relay.address, capacity, refill)
    level, last = capacity * TOKEN_UNITS, int(b.web3.eth.get_block(remote_set["blockNumber"])["timestamp"])
    messages = [stack.send(stack.a, b, payload=bytes([n])) for n in range(4)]

    for _, message in messages[:2]:
        receipt = stack.deliver(message)
        now = block_time(b, receipt)
        level, last = bucket_after(level, last, now, capacity, refill) - TOKEN_UNITS, now
    third_id, third = messages[2]
    signatures = stack.sign(third)
    reverted = expect_deliver_revert(stack, third, signatures, "RateLimited")
    now = block_time(b, reverted.receipt)
    expected_wait = math.ceil((TOKEN_UNITS - bucket_after(level, last, now, capacity, refill)) / refill)
    assert reverted.error.args == (CHAIN_A_ID, expected_wait)
    assert 0 < expected_wait <= 60
    available, next_in = b.relay.functions.rateLimitTokens(CHAIN_A_ID).call()
    head = int(b.web3.eth.get_block("latest")["timestamp"])
    assert available == 0
    assert next_in == math.ceil((TOKEN_UNITS - bucket_after(level, last, head, capacity, refill)) / refill)

    # One second short of the refill: still limited, exactly one second to go.
    rpc(b.web3, "evm_setNextBlockTimestamp", now + expected_wait - 1)
    expect_deliver_revert(stack, third, signatures, "RateLimited", CHAIN_A_ID, 1)
    rpc(b.web3, "evm_setNextBlockTimestamp", now + expected_wait)
    stack.deliver(third, signatures, gas=1_000_000)  # no estimate: it would run on the previous timestamp
    assert b.status(third_id) == STATUS_DELIVERED
    # After an hour the bucket is full again, capped at its capacity.
    increase_time(b.web3, 3_600)
    assert b.relay.functions.rateLimitTokens(CHAIN_A_ID).call() == [capacity, 0]
    stack.deliver(messages[3][1])
    assert b.status(messages[3][0]) == STATUS_DELIVERED
    # The limit is per source chain: chain 1001's own bucket for chain 1002 is untouched.
    assert stack.a.relay.functions.rateLimitTokens(CHAIN_B_ID).call() == [capacity, 0]

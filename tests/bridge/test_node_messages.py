"""The node's message codec: ids and delivery digests computed by thingledger_bridge.messages (eth_abi +
keccak) must equal the relay contract's `messageId`/`deliveryDigest` and eth_account's EIP-712 encoder, for
fuzzed fields and payloads; `MessageSent` logs of a real relay decode to the message that was sent."""

from __future__ import annotations

import pytest
from bridge_helpers import CHAIN_A_ID, CHAIN_B_ID, RelayStack, message_tuple
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from thingledger_bridge.chain import ChainClient, hexbytes
from thingledger_bridge.config import ChainConfig
from thingledger_bridge.messages import (
    MESSAGE_SENT_TOPIC,
    Message,
    MessageDecodeError,
    decode_message_sent,
    hex_id,
    parse_id,
)

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint64 = st.integers(min_value=0, max_value=2**64 - 1)
messages = st.builds(
    Message,
    version=st.integers(min_value=0, max_value=255),
    nonce=uint64,
    src_chain_id=uint64,
    src_relay=addresses,
    sender=addresses,
    dst_chain_id=uint64,
    dst_relay=addresses,
    recipient=addresses,
    gas_limit=st.integers(min_value=0, max_value=2**32 - 1),
    payload=st.binary(max_size=600),
)


def eip712_hash(message: Message, chain_id: int, relay: str) -> bytes:
    signable = encode_typed_data(full_message=message.typed_data(chain_id, relay))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@settings(max_examples=150, deadline=None)
@given(message=messages)
def test_id_and_digest_match_eth_account_eip712(message: Message) -> None:
    assert message.message_id() == eip712_hash(message, message.src_chain_id, message.src_relay)
    assert message.delivery_digest() == eip712_hash(message, message.dst_chain_id, message.dst_relay)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages)
def test_id_and_digest_match_the_relay_contract(relay_stack: RelayStack, message: Message) -> None:
    relay = relay_stack.b.relay
    # deliveryDigest hashes in the relay's own domain (chain 1002, its address): aim the message there.
    aimed = Message(**{**message.__dict__, "dst_chain_id": CHAIN_B_ID, "dst_relay": relay.address})
    assert bytes(relay.functions.messageId(aimed.as_tuple()).call()) == aimed.message_id()
    assert bytes(relay.functions.deliveryDigest(aimed.as_tuple()).call()) == aimed.delivery_digest()
    # messageId uses the message's own source domain, whatever relay answers.
    assert bytes(relay_stack.a.relay.functions.messageId(message.as_tuple()).call()) == message.message_id()


def test_a_field_change_changes_the_id() -> None:
    base = Message(
        1,
        7,
        CHAIN_A_ID,
        "0x" + "11" * 20,
        "0x" + "22" * 20,
        CHAIN_B_ID,
        "0x" + "33" * 20,
        "0x" + "44" * 20,
        100_000,
        b"hello",
    )
    base = Message.from_tuple(base.as_tuple())
    variants = [
        Message(**{**base.__dict__, "nonce": 8}),
        Message(**{**base.__dict__, "payload": b"hellp"}),
        Message(**{**base.__dict__, "gas_limit": 100_001}),
        Message(**{**base.__dict__, "recipient": to_checksum_address("0x" + "45" * 20)}),
    ]
    ids = {base.message_id(), *(v.message_id() for v in variants)}
    assert len(ids) == 5
    # The id and the digest are different domains of the same struct.
    assert base.message_id() != base.delivery_digest()


def _raw_logs(relay_stack: RelayStack, block: int) -> list[dict]:
    side = relay_stack.a
    config = ChainConfig(name="a", chain_id=side.chain_id, rpc_url=side.chain.rpc_url, relay=side.relay.address)
    client = ChainClient(config)
    return client.get_logs(block, block, [hexbytes(MESSAGE_SENT_TOPIC)])


def test_message_sent_log_decodes_to_the_sent_message(relay_stack: RelayStack) -> None:
    payload = bytes(range(200))
    sent_id, sent = relay_stack.send(relay_stack.a, relay_stack.b, payload=payload, gas_limit=123_456)
    block = relay_stack.a.web3.eth.block_number
    logs = _raw_logs(relay_stack, block)
    assert len(logs) == 1
    decoded = decode_message_sent(logs[0])
    assert decoded.id == sent_id
    assert decoded.message.as_tuple() == message_tuple(sent)
    assert decoded.message.message_id() == sent_id
    assert decoded.block_number == block
    assert decoded.address == relay_stack.a.relay.address


def test_tampered_logs_are_refused(relay_stack: RelayStack) -> None:
    relay_stack.send(relay_stack.a, relay_stack.b, payload=b"x")
    log = _raw_logs(relay_stack, relay_stack.a.web3.eth.block_number)[0]
    wrong_topic = {**log, "topics": ["0x" + "00" * 32, *log["topics"][1:]]}
    with pytest.raises(MessageDecodeError, match="not a MessageSent"):
        decode_message_sent(wrong_topic)
    other_dst = {**log, "topics": [*log["topics"][:2], "0x" + (9999).to_bytes(32, "big").hex(), log["topics"][3]]}
    with pytest.raises(MessageDecodeError, match="dstChainId"):
        decode_message_sent(other_dst)
    other_sender = {**log, "topics": [*log["topics"][:3], "0x" + "00" * 12 + "ab" * 20]}
    with pytest.raises(MessageDecodeError, match="sender"):
        decode_message_sent(other_sender)
    with pytest.raises(MessageDecodeError, match="malformed"):
        decode_message_sent({**log, "data": "0x1234"})
    # A changed id topic decodes (the topics agree), but no longer matches the message's hash.
    forged = decode_message_sent({**log, "topics": [log["topics"][0], "0x" + "aa" * 32, *log["topics"][2:]]})
    assert forged.message.message_id() != forged.id


def test_parse_id_accepts_hex_with_or_without_prefix_and_refuses_the_rest() -> None:
    value = bytes(range(32))
    assert parse_id(hex_id(value)) == value
    assert parse_id(value.hex().upper()) == value
    for bad in ("0x1234", "zz" * 32, "", "0x" + "00" * 33):
        with pytest.raises(ValueError, match="32 bytes"):
            parse_id(bad)

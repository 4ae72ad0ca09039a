"""The pickup challenge: JSON round trips, strict parsing, signatures and the single-use store."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st
from thingledger_device.challenge import (
    RECORD_GRACE_SECONDS,
    Challenge,
    ChallengeResponse,
    ChallengeStore,
    new_challenge,
    parse_challenge,
    parse_response,
    recover_signer,
    sign_challenge,
)
from thingledger_device.errors import DeviceClientError

SALES_ORDER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
NOW = 1_700_000_000
BUYER = Account.from_key("0x" + "42" * 32)
OTHER = Account.from_key("0x" + "43" * 32)

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
challenges = st.builds(
    Challenge,
    chain_id=uint256,
    sales_order=addresses,
    order_id=uint256,
    gate_id=uint256,
    challenge=st.binary(min_size=32, max_size=32),
    expires_at=st.integers(min_value=0, max_value=2**64 - 1),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=7),
    max_leaves=20,
)


def a_challenge(**changes: Any) -> Challenge:
    base = Challenge(31337, SALES_ORDER, 7, 1234, bytes(range(32)), NOW + 120)
    return replace(base, **changes)


@given(challenges)
def test_challenge_json_round_trip(challenge: Challenge) -> None:
    assert parse_challenge(json.dumps(challenge.to_json())) == challenge


@given(challenges, st.binary(min_size=65, max_size=65))
def test_response_json_round_trip(challenge: Challenge, signature: bytes) -> None:
    response = ChallengeResponse(challenge, signature)
    assert parse_response(json.dumps(response.to_json())) == response


def test_challenge_json_has_the_documented_fields() -> None:
    document = a_challenge().to_json()
    assert list(document) == ["chainId", "salesOrder", "orderId", "gateId", "challenge", "expiresAt"]
    assert document["challenge"] == "0x" + bytes(range(32)).hex()


@given(st.text())
def test_arbitrary_text_only_raises_the_client_error(text: str) -> None:
    for parse in (parse_challenge, parse_response):
        try:
            parse(text)
        except DeviceClientError:
            pass


@given(json_values)
def test_arbitrary_json_only_raises_the_client_error(value: Any) -> None:
    for parse in (parse_challenge, parse_response):
        try:
            parse(json.dumps(value))
        except DeviceClientError:
            pass


@given(st.sampled_from(["chainId", "salesOrder", "orderId", "gateId", "challenge", "expiresAt"]), json_values)
def test_any_bad_field_value_only_raises_the_client_error(field: str, value: Any) -> None:
    document = a_challenge().to_json()
    document[field] = value
    try:
        parsed = parse_challenge(json.dumps(document))
    except DeviceClientError:
        return
    written = parsed.to_json()[field]
    assert written == value or (isinstance(value, str) and written.lower() == value.lower())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("orderId", True, "expected an integer"),
        ("orderId", 7.0, "expected an integer"),
        ("orderId", "7", "expected an integer"),
        ("orderId", -1, "out of range"),
        ("gateId", 2**256, "out of range"),
        ("expiresAt", 2**64, "out of range"),
        ("challenge", "0x" + "00" * 31, "64 hex digits"),
        ("challenge", "00" * 32, "64 hex digits"),
        ("salesOrder", SALES_ORDER.replace("e", "E", 1), "EIP-55"),
    ],
)
def test_rejects_bad_fields(field: str, value: Any, message: str) -> None:
    document = a_challenge().to_json()
    document[field] = value
    with pytest.raises(DeviceClientError) as raised:
        parse_challenge(json.dumps(document))
    assert message in raised.value.message


def test_rejects_missing_and_unknown_fields() -> None:
    document = a_challenge().to_json()
    del document["gateId"]
    with pytest.raises(DeviceClientError, match="missing field"):
        parse_challenge(json.dumps(document))
    with pytest.raises(DeviceClientError, match="unknown field"):
        parse_challenge(json.dumps({**a_challenge().to_json(), "note": "hi"}))
    with pytest.raises(DeviceClientError, match="65-byte signature"):
        parse_response(json.dumps({"challenge": a_challenge().to_json(), "signature": "0x1234"}))


def test_signature_recovers_the_signer_and_binds_every_field() -> None:
    challenge = a_challenge()
    response = sign_challenge(BUYER, challenge)
    assert recover_signer(response) == BUYER.address
    for changed in (
        replace(challenge, order_id=8),
        replace(challenge, gate_id=1235),
        replace(challenge, challenge=bytes(32)),
        replace(challenge, expires_at=NOW + 121),
        replace(challenge, chain_id=1),
        replace(challenge, sales_order=to_checksum_address(b"\x01" * 20)),
    ):
        assert recover_signer(ChallengeResponse(changed, response.signature)) != BUYER.address


def test_malformed_signature_is_a_client_error() -> None:
    with pytest.raises(DeviceClientError, match="malformed"):
        recover_signer(ChallengeResponse(a_challenge(), b"\x00" * 32 + b"\x01" * 32 + b"\x1b"))  # r = 0


SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_only_the_canonical_signature_form_is_accepted() -> None:
    """The gate accepts exactly what SalesOrder.release accepts on chain: 65 bytes, low s, v 27 or 28.
    The high-s twin and v 0/1 recover the same signer in eth-account, yet the release would revert."""
    challenge = a_challenge()
    signature = sign_challenge(BUYER, challenge).signature
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    high_s_twin = r + (SECP256K1_ORDER - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    for bad in (high_s_twin, signature[:64] + bytes([v - 27]), signature[:64], signature + b"\x00"):
        with pytest.raises(DeviceClientError, match="canonical form"):
            recover_signer(ChallengeResponse(challenge, bad))
    assert recover_signer(ChallengeResponse(challenge, signature)) == BUYER.address


def test_new_challenges_are_random_and_expire_after_the_ttl() -> None:
    first = new_challenge(31337, SALES_ORDER, 7, 1234, 120, NOW)
    second = new_challenge(31337, SALES_ORDER, 7, 1234, 120, NOW)
    assert first.challenge != second.challenge and len(first.challenge) == 32
    assert first.expires_at == NOW + 120
    for ttl in (0, 901):
        with pytest.raises(DeviceClientError, match="ttl"):
            new_challenge(31337, SALES_ORDER, 7, 1234, ttl, NOW)


def test_store_accepts_an_issued_challenge_until_it_is_consumed(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    challenge = a_challenge()
    path = store.save(challenge, NOW)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.check(challenge, NOW) == challenge
    assert store.check(challenge, NOW + 120) == challenge  # still valid at its expiry second
    store.consume(challenge)
    with pytest.raises(DeviceClientError, match="already used"):
        store.check(challenge, NOW)
    with pytest.raises(DeviceClientError, match="already used"):
        store.consume(challenge)


def test_store_refuses_expired_unknown_and_altered_challenges(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    challenge = a_challenge()
    store.save(challenge, NOW)
    with pytest.raises(DeviceClientError, match="expired"):
        store.check(challenge, NOW + 121)
    with pytest.raises(DeviceClientError, match="unknown challenge"):
        store.check(replace(challenge, challenge=b"\x07" * 32), NOW)
    for altered in (replace(challenge, order_id=8), replace(challenge, expires_at=NOW + 10_000)):
        with pytest.raises(DeviceClientError, match="altered"):
            store.check(altered, NOW)


def test_store_prunes_long_expired_records(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    old = a_challenge(challenge=b"\x01" * 32)
    used = a_challenge(challenge=b"\x02" * 32)
    fresh = a_challenge(challenge=b"\x03" * 32)
    store.save(old, NOW)
    store.save(used, NOW)
    store.consume(used)
    later = NOW + 120 + RECORD_GRACE_SECONDS + 1
    store.save(replace(fresh, expires_at=later + 120), later)
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == [fresh.challenge.hex() + ".json"]

"""The market commands' value parsers: service types (names hashed, hashes as given), wei amounts and unit
counts in ServiceMarket's ranges, policies, evidence hashes, timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from hypothesis import assume, given
from hypothesis import strategies as st
from thingledger_device.errors import DeviceClientError
from thingledger_device.market_values import (
    MAX_SERVICE_NAME_LENGTH,
    UINT32_MAX,
    UINT40_MAX,
    UINT96_MAX,
    ServiceType,
    check_timestamp,
    evidence_of_file,
    parse_evidence,
    parse_service_type,
    parse_unit_price,
    parse_units,
    policy_index,
    service_type_id,
)

NAMES = st.text(min_size=1, max_size=MAX_SERVICE_NAME_LENGTH).filter(
    lambda text: text == text.strip() and text.isprintable() and not text.lower().startswith("0x")
)


def test_a_name_stands_for_the_keccak256_of_its_utf8_text() -> None:
    parsed = parse_service_type("hvac-repair")
    assert parsed == ServiceType(keccak(b"hvac-repair"), "hvac-repair")
    assert parsed.hex == "0x" + keccak(b"hvac-repair").hex()
    assert parsed.to_json() == {"serviceType": parsed.hex, "serviceName": "hvac-repair"}
    assert parsed.describe() == f"hvac-repair ({parsed.hex})"
    assert parse_service_type("Reparatur – Kühlung").type_id == keccak("Reparatur – Kühlung".encode())


def test_a_hash_is_taken_as_given_in_either_case() -> None:
    digest = keccak(b"hvac-repair")
    for text in ("0x" + digest.hex(), "0x" + digest.hex().upper(), "0X" + digest.hex()):
        parsed = parse_service_type(text)
        assert parsed.type_id == digest and parsed.name is None
        assert parsed.to_json() == {"serviceType": "0x" + digest.hex(), "serviceName": None}
        assert parsed.describe() == "0x" + digest.hex()


@given(NAMES)
def test_names_hash_to_their_keccak256(name: str) -> None:
    parsed = parse_service_type(name)
    assert parsed.name == name and parsed.type_id == keccak(name.encode("utf-8")) == service_type_id(name)


@given(st.binary(min_size=32, max_size=32))
def test_hashes_round_trip(digest: bytes) -> None:
    parsed = parse_service_type("0x" + digest.hex())
    assert parsed.type_id == digest and parse_service_type(parsed.hex) == parsed


@given(st.text(max_size=300))
def test_any_text_is_a_service_type_or_one_client_error(text: str) -> None:
    try:
        parsed = parse_service_type(text)
    except DeviceClientError as error:
        assert "\n" not in error.message and error.message.startswith("--service-type: ")
    else:
        assert len(parsed.type_id) == 32


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "name is empty"),
        ("0x12", "is not 0x and 64 hex digits"),
        ("0x" + "ab" * 31, "is not 0x and 64 hex digits"),
        ("0x" + "zz" * 32, "is not 0x and 64 hex digits"),
        ("0xservice", "names must not start with 0x"),
        (" hvac", "no leading or trailing spaces"),
        ("hvac\n", "no control characters"),
        ("x" * (MAX_SERVICE_NAME_LENGTH + 1), "longer than 200 characters"),
    ],
)
def test_bad_service_types_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(DeviceClientError, match="^--service-type: ") as raised:
        parse_service_type(text)
    assert fragment in raised.value.message


@given(st.integers(min_value=1, max_value=UINT96_MAX))
def test_unit_prices_in_range_parse(value: int) -> None:
    assert parse_unit_price(str(value)) == value


@given(st.integers(min_value=UINT96_MAX + 1, max_value=2**256 - 1))
def test_unit_prices_above_uint96_are_refused(value: int) -> None:
    with pytest.raises(DeviceClientError, match=f"--unit-price: {value} is out of range \\(1 to {UINT96_MAX} wei\\)"):
        parse_unit_price(str(value))


@given(st.integers(min_value=1, max_value=UINT32_MAX))
def test_units_in_range_parse(value: int) -> None:
    assert parse_units(str(value)) == value


@given(st.text(max_size=90))
def test_any_amount_text_parses_in_range_or_fails_in_one_line(text: str) -> None:
    for parse, maximum in ((parse_unit_price, UINT96_MAX), (parse_units, UINT32_MAX)):
        try:
            value = parse(text)
        except DeviceClientError as error:
            assert "\n" not in error.message
        else:
            assert 1 <= value <= maximum and str(value) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "must be at least 1"),
        ("-1", "not a canonical decimal"),
        ("1e9", "not a canonical decimal"),
        ("1.5", "not a canonical decimal"),
        ("007", "not a canonical decimal"),
        (" 7", "not a canonical decimal"),
        ("1 ether", "not a canonical decimal"),
        (str(2**32), f"is out of range (1 to {UINT32_MAX})"),
    ],
)
def test_bad_unit_counts_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(DeviceClientError) as raised:
        parse_units(text)
    assert raised.value.message.startswith("--units: ") and fragment in raised.value.message


def test_the_option_name_is_in_the_message() -> None:
    with pytest.raises(DeviceClientError, match="^--max-unit-price: must be at least 1 wei$"):
        parse_unit_price("0", "--max-unit-price")


def test_policies_follow_the_contract_enum() -> None:
    assert [policy_index(name) for name in ("latest", "lowest", "earliest")] == [0, 1, 2]
    with pytest.raises(DeviceClientError, match="unknown policy 'cheapest'"):
        policy_index("cheapest")


def test_evidence_is_a_hash_or_the_keccak256_of_a_file(tmp_path: Path) -> None:
    assert parse_evidence("0x" + "5a" * 32) == b"\x5a" * 32
    with pytest.raises(DeviceClientError, match="--evidence: expected 0x and 64 hex digits"):
        parse_evidence("5a" * 32)
    reading = tmp_path / "reading.bin"
    reading.write_bytes(b"\x00\x01temperature=4.5")
    assert evidence_of_file(reading) == keccak(reading.read_bytes())
    with pytest.raises(DeviceClientError, match="--evidence-file: cannot read"):
        evidence_of_file(tmp_path / "absent.bin")


def test_timestamps_must_be_in_the_future_and_fit_40_bits() -> None:
    assert check_timestamp(101, "deadline", 100) == 101
    with pytest.raises(DeviceClientError, match=r"deadline: 100 is not in the future \(the chain's time is 100\)"):
        check_timestamp(100, "deadline", 100)
    with pytest.raises(DeviceClientError, match=f"out of range \\(at most {UINT40_MAX}\\)"):
        check_timestamp(UINT40_MAX + 1, "deadline", 100)


@given(st.integers(min_value=0, max_value=2**41), st.integers(min_value=0, max_value=2**40))
def test_timestamp_check_agrees_with_the_contract(value: int, now: int) -> None:
    assume(now < UINT40_MAX)
    accepted = now < value <= UINT40_MAX
    try:
        check_timestamp(value, "t", now)
    except DeviceClientError:
        assert not accepted
    else:
        assert accepted

"""The receipt URI (the paper's barcode): round trips and strict rejection of everything else."""

from __future__ import annotations

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st
from thingledger_device.errors import DeviceClientError
from thingledger_device.receipt import RECEIPT_PREFIX, Receipt, make_receipt, parse_receipt

SALES_ORDER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
BUYER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
VALID = f"{RECEIPT_PREFIX}v=1&chain=31337&contract={SALES_ORDER}&order=7&buyer={BUYER}"

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
uint256_positive = st.integers(min_value=1, max_value=2**256 - 1)
receipts = st.builds(
    Receipt, chain_id=uint256_positive, sales_order=addresses, order_id=uint256_positive, buyer=addresses
)


def test_parses_a_valid_receipt() -> None:
    assert parse_receipt(VALID) == Receipt(chain_id=31337, sales_order=SALES_ORDER, order_id=7, buyer=BUYER)


def test_writes_the_documented_uri() -> None:
    assert make_receipt(31337, SALES_ORDER.lower(), 7, BUYER.lower()).uri() == VALID


def test_ignores_whitespace_a_scanner_adds() -> None:
    assert parse_receipt(f"  {VALID}\r\n").order_id == 7


@given(receipts)
def test_round_trip(receipt: Receipt) -> None:
    assert parse_receipt(receipt.uri()) == receipt


@given(receipts, st.randoms(use_true_random=False))
def test_field_order_does_not_matter(receipt: Receipt, random: object) -> None:
    fields = receipt.uri().removeprefix(RECEIPT_PREFIX).split("&")
    random.shuffle(fields)  # type: ignore[attr-defined]
    assert parse_receipt(RECEIPT_PREFIX + "&".join(fields)) == receipt


@given(st.text())
def test_arbitrary_text_only_raises_the_client_error(text: str) -> None:
    try:
        parse_receipt(text)
    except DeviceClientError as error:
        assert "\n" not in error.message


@given(receipts, st.data())
def test_mutated_receipts_only_raise_the_client_error(receipt: Receipt, data: st.DataObject) -> None:
    uri = receipt.uri()
    position = data.draw(st.integers(min_value=0, max_value=len(uri)))
    cut = data.draw(st.integers(min_value=0, max_value=3))
    insert = data.draw(st.text(alphabet="0123456789abcdefABCDEF&=x-+ %v", max_size=3))
    mutated = uri[:position] + insert + uri[position + cut :]
    try:
        parsed = parse_receipt(mutated)
    except DeviceClientError:
        return
    assert parsed.uri() == mutated.strip()  # anything accepted is canonical


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (VALID.replace("v=1", "v=2"), "unsupported version"),
        (VALID.replace("&order=7", ""), "missing field(s) order"),
        (VALID + "&order=8", "appears more than once"),
        (VALID + "&memo=hi", "unknown field"),
        (VALID + "&order", "is not a name=value field"),
        (VALID.replace(BUYER, BUYER.lower()), "not an EIP-55 checksummed address"),
        (VALID.replace(BUYER, BUYER.replace("F", "f", 1)), "not an EIP-55 checksummed address"),
        (VALID.replace(BUYER, BUYER[:-1]), "is not an address"),
        (VALID.replace(SALES_ORDER, "0x" + "g" * 40), "is not an address"),
        (VALID.replace("order=7", "order=-7"), "receipt order"),
        (VALID.replace("order=7", "order=+7"), "receipt order"),
        (VALID.replace("order=7", "order=07"), "no leading zeros"),
        (VALID.replace("order=7", "order=7.0"), "receipt order"),
        (VALID.replace("order=7", "order=0x7"), "receipt order"),
        (VALID.replace("order=7", "order=\u0667"), "receipt order"),  # an Arabic-Indic seven
        (VALID.replace("order=7", "order=0"), "order ids start at 1"),
        (VALID.replace("chain=31337", "chain=0"), "chain id must be positive"),
        (VALID.replace("order=7", f"order={2**256}"), "does not fit in 256 bits"),
        (VALID.replace("thingledger://", "https://"), "does not start with"),
        (VALID.replace("order=7", "order=7 "), "receipt order"),
        (VALID + "#fragment", "not an address"),
        (VALID.replace("order=7", "order=" + "9" * 600), "longer than"),
    ],
)
def test_rejects_malformed_receipts(uri: str, message: str) -> None:
    with pytest.raises(DeviceClientError) as raised:
        parse_receipt(uri)
    assert message in raised.value.message

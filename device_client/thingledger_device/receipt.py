"""The purchase receipt a buyer shows at the warehouse gate (the paper's barcode), as a strict URI.

    thingledger://receipt?v=1&chain=<chainId>&contract=<SalesOrder>&order=<orderId>&buyer=<buyer>

Addresses are EIP-55 checksummed, numbers canonical decimals, the fields in this order when written;
parsing accepts any order but nothing missing, repeated, unknown or malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DeviceClientError
from .values import parse_address, parse_decimal, show_value

RECEIPT_PREFIX = "thingledger://receipt?"
RECEIPT_VERSION = "1"
RECEIPT_FIELDS = ("v", "chain", "contract", "order", "buyer")
MAX_RECEIPT_LENGTH = 512


@dataclass(frozen=True)
class Receipt:
    """Proof of purchase: order `order_id` of SalesOrder `sales_order` on chain `chain_id` bought by `buyer`."""

    chain_id: int
    sales_order: str
    order_id: int
    buyer: str

    def uri(self) -> str:
        """The receipt as the URI printed in its QR code."""
        return (
            f"{RECEIPT_PREFIX}v={RECEIPT_VERSION}&chain={self.chain_id}&contract={self.sales_order}"
            f"&order={self.order_id}&buyer={self.buyer}"
        )


def make_receipt(chain_id: int, sales_order: str, order_id: int, buyer: str) -> Receipt:
    """A receipt from checked values (addresses may be given in any valid spelling)."""
    if chain_id <= 0:
        raise DeviceClientError(f"receipt chain: chain id must be positive, got {chain_id}")
    if order_id <= 0:
        raise DeviceClientError(f"receipt order: order ids start at 1, got {order_id}")
    return Receipt(
        chain_id=chain_id,
        sales_order=parse_address(sales_order, "receipt contract"),
        order_id=order_id,
        buyer=parse_address(buyer, "receipt buyer"),
    )


def parse_receipt(text: str) -> Receipt:
    """Parses a receipt URI (surrounding whitespace, as a barcode scanner may add, is ignored)."""
    uri = text.strip()
    if len(uri) > MAX_RECEIPT_LENGTH:
        raise DeviceClientError(f"receipt: longer than {MAX_RECEIPT_LENGTH} characters")
    if not uri.startswith(RECEIPT_PREFIX):
        raise DeviceClientError(f"receipt: {show_value(uri)} does not start with {RECEIPT_PREFIX}")
    fields: dict[str, str] = {}
    for pair in uri[len(RECEIPT_PREFIX) :].split("&"):
        name, separator, value = pair.partition("=")
        if not separator:
            raise DeviceClientError(f"receipt: {show_value(pair)} is not a name=value field")
        if name not in RECEIPT_FIELDS:
            raise DeviceClientError(f"receipt: unknown field {show_value(name)}")
        if name in fields:
            raise DeviceClientError(f"receipt: field {name!r} appears more than once")
        fields[name] = value
    missing = [name for name in RECEIPT_FIELDS if name not in fields]
    if missing:
        raise DeviceClientError(f"receipt: missing field(s) {', '.join(missing)}")
    if fields["v"] != RECEIPT_VERSION:
        raise DeviceClientError(f"receipt: unsupported version {show_value(fields['v'])} (this client reads v=1)")
    chain_id = parse_decimal(fields["chain"], "receipt chain")
    order_id = parse_decimal(fields["order"], "receipt order")
    sales_order = parse_address(fields["contract"], "receipt contract", require_checksum=True)
    buyer = parse_address(fields["buyer"], "receipt buyer", require_checksum=True)
    return make_receipt(chain_id, sales_order, order_id, buyer)

"""ServiceMarket's events: decoding raw logs (from a receipt, eth_getLogs or a filter) against the shipped
ABI, with enum values named, and describing them for people and machines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from .contracts import ENUM_NAMES, SERVICE_MARKET, load_abi

# Events carrying the service type as their second indexed argument (topic 2): a topic filter selects one
# market's. AgreementDeclined does not carry it: a watch keeps those whose offer is of the market's type.
TYPED_EVENTS = (
    "OfferPublished",
    "OfferPriceUpdated",
    "OfferWithdrawn",
    "OfferPruned",
    "RequestPosted",
    "RequestMatched",
)
OFFER_EVENTS = ("AgreementDeclined",)
WATCHED_EVENTS = TYPED_EVENTS + OFFER_EVENTS


@dataclass(frozen=True)
class MarketEvent:
    """A decoded ServiceMarket log."""

    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    tx_hash: str

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the log on the chain (for removing duplicates)."""
        return (self.tx_hash, self.log_index)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.name,
            **{name: _json_value(value) for name, value in self.args.items()},
            "blockNumber": self.block_number,
            "logIndex": self.log_index,
            "transactionHash": self.tx_hash,
        }

    def describe(self) -> str:
        """One line of rich markup for people."""
        from rich.markup import escape

        from .challenge import describe_time

        try:
            text = self._summary(describe_time)
        except (KeyError, TypeError, ValueError):  # an event of another ABI version: show its fields
            text = ", ".join(f"{name}={_json_value(value)}" for name, value in self.args.items())
        return f"[dim]block {self.block_number}[/dim] [bold cyan]{self.name}[/bold cyan] {escape(text)}"

    def _summary(self, describe_time: Callable[[int], str]) -> str:
        a = self.args
        if self.name == "OfferPublished":
            text = (
                f"offer {a['offerId']} by device {device_label(a['deviceId'])}: {a['units']} units at "
                f"{a['unitPrice']} wei, valid until {describe_time(a['validUntil'])}"
            )
            return text + (f" ({a['metadataURI']})" if a["metadataURI"] else "")
        if self.name == "OfferPriceUpdated":
            return f"offer {a['offerId']} now at {a['unitPrice']} wei"
        if self.name == "OfferWithdrawn":
            return f"offer {a['offerId']} of device {device_label(a['deviceId'])} left the market"
        if self.name == "OfferPruned":
            return f"offer {a['offerId']} pruned ({a['reason']})"
        if self.name == "RequestPosted":
            attester = f", attester {a['attester']}" if int(a["attester"], 16) else ""
            return (
                f"request {a['requestId']} by {a['demander']}: {a['units']} units at most {a['maxUnitPrice']} wei, "
                f"{a['policy']}, deadline {describe_time(a['deadline'])}{attester}"
            )
        if self.name == "RequestMatched":
            return (
                f"request {a['requestId']} matched offer {a['offerId']} at {a['unitPrice']} wei "
                f"(round {a['round']}, {a['unitsLeft']} units left, {a['refunded']} wei back to the demander)"
            )
        if self.name == "AgreementDeclined":
            return f"offer {a['offerId']} declined request {a['requestId']} (round {a['round']})"
        return ", ".join(f"{name}={_json_value(value)}" for name, value in a.items())


def device_label(device_id: int) -> str:
    """A device id as people know it: the address it was derived from (the device's first key)."""
    from eth_utils.address import to_checksum_address

    if 0 < device_id < 2**160:
        return str(to_checksum_address(device_id.to_bytes(20, "big")))
    return str(device_id)


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@cache
def _events() -> dict[bytes, dict[str, Any]]:
    """ServiceMarket's events by topic 0 (the keccak256 of the signature)."""
    from eth_utils.crypto import keccak

    table: dict[bytes, dict[str, Any]] = {}
    for entry in load_abi(SERVICE_MARKET):
        if entry.get("type") == "event":
            signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
            table[bytes(keccak(text=signature))] = entry
    return table


def event_topic(name: str) -> bytes:
    """Topic 0 of ServiceMarket's event `name`."""
    for topic, entry in _events().items():
        if entry["name"] == name:
            return topic
    raise KeyError(name)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)


def decode_log(log: Any) -> MarketEvent | None:
    """A log as a MarketEvent; None for a log that is not one of ServiceMarket's events (or is malformed).

    `log` is a mapping as web3 returns it (topics and data as bytes or hex strings).
    """
    from eth_abi.abi import decode
    from eth_utils.address import to_checksum_address

    try:
        topics = [_as_bytes(topic) for topic in log["topics"]]
        data = _as_bytes(log["data"])
        block_number = int(log["blockNumber"])
        log_index = int(log["logIndex"])
        tx_hash = "0x" + _as_bytes(log["transactionHash"]).hex()
    except (KeyError, TypeError, ValueError):
        return None
    if not topics:
        return None
    entry = _events().get(topics[0])
    if entry is None:
        return None
    indexed = [spec for spec in entry["inputs"] if spec["indexed"]]
    plain = [spec for spec in entry["inputs"] if not spec["indexed"]]
    if len(topics) != 1 + len(indexed):
        return None
    try:
        indexed_values = [decode([spec["type"]], topic)[0] for spec, topic in zip(indexed, topics[1:], strict=True)]
        plain_values = list(decode([spec["type"] for spec in plain], data, strict=False))
    except Exception:  # eth-abi raises several decoding error types; undecodable means "not this event"
        return None
    values = dict(zip([spec["name"] for spec in indexed], indexed_values, strict=True))
    values.update(zip([spec["name"] for spec in plain], plain_values, strict=True))
    args: dict[str, Any] = {}
    for spec in entry["inputs"]:  # in declaration order
        value = values[spec["name"]]
        names = ENUM_NAMES.get(spec.get("internalType", ""))
        if names is not None and isinstance(value, int):
            value = names[value] if value < len(names) else f"unknown({value})"
        elif spec["type"] == "address":
            value = str(to_checksum_address(value))
        args[spec["name"]] = value
    return MarketEvent(entry["name"], args, block_number, log_index, tx_hash)


def events_named(logs: Any, name: str, contract: str) -> list[MarketEvent]:
    """The events `name` that `contract` (an address) emitted among `logs` (a receipt's, for example)."""
    found: list[MarketEvent] = []
    for log in logs:
        address = log.get("address") if hasattr(log, "get") else None
        if not isinstance(address, str) or address.lower() != contract.lower():
            continue
        event = decode_log(log)
        if event is not None and event.name == name:
            found.append(event)
    return found

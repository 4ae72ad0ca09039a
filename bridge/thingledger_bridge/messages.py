"""CrossChainRelay messages: the Message record, its EIP-712 id and delivery digest (computed here with
eth_abi and keccak, not asked of a node), and decoding of `MessageSent` logs.

id     = EIP-712 hash of the message in the SOURCE relay's domain (chainId = srcChainId, verifyingContract = srcRelay)
digest = EIP-712 hash of the message in the DESTINATION relay's domain (what validators sign)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

DOMAIN_NAME = "thingledger CrossChainRelay"
DOMAIN_VERSION = "1"
MESSAGE_TYPE = (
    "Message(uint8 version,uint64 nonce,uint64 srcChainId,address srcRelay,address sender,uint64 dstChainId,"
    "address dstRelay,address recipient,uint32 gasLimit,bytes payload)"
)
MESSAGE_TYPEHASH = keccak(text=MESSAGE_TYPE)
DOMAIN_TYPEHASH = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
MESSAGE_TUPLE = "(uint8,uint64,uint64,address,address,uint64,address,address,uint32,bytes)"
MESSAGE_SENT_TOPIC = keccak(text=f"MessageSent(bytes32,uint64,address,{MESSAGE_TUPLE})")
MESSAGE_DELIVERED_TOPIC = keccak(text="MessageDelivered(bytes32,uint64,address)")
MESSAGE_FAILED_TOPIC = keccak(text="MessageFailed(bytes32,uint64,address,bytes)")


class MessageDecodeError(ValueError):
    """A log that is not a well-formed `MessageSent`."""


@dataclass(frozen=True)
class Message:
    """`ICrossChainRelay.Message`. Addresses are checksummed."""

    version: int
    nonce: int
    src_chain_id: int
    src_relay: str
    sender: str
    dst_chain_id: int
    dst_relay: str
    recipient: str
    gas_limit: int
    payload: bytes

    def as_tuple(self) -> tuple[Any, ...]:
        """The message as the ABI tuple `deliver` and `retry` take."""
        return (
            self.version,
            self.nonce,
            self.src_chain_id,
            self.src_relay,
            self.sender,
            self.dst_chain_id,
            self.dst_relay,
            self.recipient,
            self.gas_limit,
            self.payload,
        )

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...] | list[Any]) -> Message:
        (version, nonce, src_chain_id, src_relay, sender, dst_chain_id, dst_relay, recipient, gas_limit, payload) = (
            values
        )
        return cls(
            version=int(version),
            nonce=int(nonce),
            src_chain_id=int(src_chain_id),
            src_relay=to_checksum_address(src_relay),
            sender=to_checksum_address(sender),
            dst_chain_id=int(dst_chain_id),
            dst_relay=to_checksum_address(dst_relay),
            recipient=to_checksum_address(recipient),
            gas_limit=int(gas_limit),
            payload=bytes(payload),
        )

    def struct_hash(self) -> bytes:
        """The EIP-712 struct hash (the payload enters as its keccak256)."""
        return keccak(
            abi_encode(
                [
                    "bytes32",
                    "uint8",
                    "uint64",
                    "uint64",
                    "address",
                    "address",
                    "uint64",
                    "address",
                    "address",
                    "uint32",
                    "bytes32",
                ],
                [
                    MESSAGE_TYPEHASH,
                    self.version,
                    self.nonce,
                    self.src_chain_id,
                    self.src_relay,
                    self.sender,
                    self.dst_chain_id,
                    self.dst_relay,
                    self.recipient,
                    self.gas_limit,
                    keccak(self.payload),
                ],
            )
        )

    def message_id(self) -> bytes:
        """The id: the EIP-712 hash in the source relay's domain."""
        return typed_data_hash(domain_separator(self.src_chain_id, self.src_relay), self.struct_hash())

    def delivery_digest(self) -> bytes:
        """What validators sign: the EIP-712 hash in the destination relay's domain."""
        return typed_data_hash(domain_separator(self.dst_chain_id, self.dst_relay), self.struct_hash())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "nonce": self.nonce,
            "src_chain_id": self.src_chain_id,
            "src_relay": self.src_relay,
            "sender": self.sender,
            "dst_chain_id": self.dst_chain_id,
            "dst_relay": self.dst_relay,
            "recipient": self.recipient,
            "gas_limit": self.gas_limit,
            "payload": "0x" + self.payload.hex(),
        }

    def typed_data(self, chain_id: int, relay: str) -> dict[str, Any]:
        """The message as an EIP-712 typed-data document in the domain of `relay` on `chain_id` (for
        eth_account's encode_typed_data, which tests use to cross-check `message_id` and `delivery_digest`)."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Message": [
                    {"name": "version", "type": "uint8"},
                    {"name": "nonce", "type": "uint64"},
                    {"name": "srcChainId", "type": "uint64"},
                    {"name": "srcRelay", "type": "address"},
                    {"name": "sender", "type": "address"},
                    {"name": "dstChainId", "type": "uint64"},
                    {"name": "dstRelay", "type": "address"},
                    {"name": "recipient", "type": "address"},
                    {"name": "gasLimit", "type": "uint32"},
                    {"name": "payload", "type": "bytes"},
                ],
            },
            "primaryType": "Message",
            "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id, "verifyingContract": relay},
            "message": {
                "version": self.version,
                "nonce": self.nonce,
                "srcChainId": self.src_chain_id,
                "srcRelay": self.src_relay,
                "sender": self.sender,
                "dstChainId": self.dst_chain_id,
                "dstRelay": self.dst_relay,
                "recipient": self.recipient,
                "gasLimit": self.gas_limit,
                "payload": self.payload,
            },
        }


def domain_separator(chain_id: int, relay: str) -> bytes:
    """The EIP-712 domain separator of the relay `relay` on chain `chain_id`."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(text=DOMAIN_NAME), keccak(text=DOMAIN_VERSION), chain_id, relay],
        )
    )


def typed_data_hash(separator: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + separator + struct_hash)


@dataclass(frozen=True)
class SentLog:
    """A decoded `MessageSent` log and where it was found."""

    id: bytes
    message: Message
    address: str
    block_number: int
    block_hash: bytes
    transaction_hash: bytes
    log_index: int


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    raise MessageDecodeError(f"expected hex data, got {type(value).__name__}")


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16)
    raise MessageDecodeError(f"expected a quantity, got {type(value).__name__}")


def decode_message_sent(log: dict[str, Any]) -> SentLog:
    """Decodes a raw JSON-RPC log of `MessageSent`; checks the indexed topics agree with the message but does
    NOT check the id (callers compare `id` with `message.message_id()`)."""
    try:
        topics = [_bytes(topic) for topic in log["topics"]]
        if len(topics) != 4 or topics[0] != MESSAGE_SENT_TOPIC:
            raise MessageDecodeError("not a MessageSent log")
        (values,) = abi_decode([MESSAGE_TUPLE], _bytes(log["data"]))
        message = Message.from_tuple(values)
        if int.from_bytes(topics[2], "big") != message.dst_chain_id:
            raise MessageDecodeError("indexed dstChainId differs from the message's")
        if to_checksum_address(topics[3][12:]) != message.sender:
            raise MessageDecodeError("indexed sender differs from the message's")
        return SentLog(
            id=topics[1],
            message=message,
            address=to_checksum_address(log["address"]),
            block_number=_int(log["blockNumber"]),
            block_hash=_bytes(log["blockHash"]),
            transaction_hash=_bytes(log["transactionHash"]),
            log_index=_int(log["logIndex"]),
        )
    except MessageDecodeError:
        raise
    except Exception as error:  # noqa: BLE001 - any malformed field is a decode error
        raise MessageDecodeError(f"malformed MessageSent log ({type(error).__name__}: {error})") from None


def hex_id(value: bytes) -> str:
    """A message id as the node writes it: 0x-prefixed lowercase hex."""
    return "0x" + value.hex()


def parse_id(text: str) -> bytes:
    """A message id given by a person: 32 bytes of hex, 0x optional; raises ValueError."""
    body = text.strip().lower()
    body = body[2:] if body.startswith("0x") else body
    if len(body) != 64:
        raise ValueError(f"message id must be 32 bytes of hex, got {text!r}")
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ValueError(f"message id must be 32 bytes of hex, got {text!r}") from None

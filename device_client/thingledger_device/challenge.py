"""The pickup challenge: a fresh random value a gate issues for one order, which the buyer signs (EIP-712
`PickupChallenge` in the SalesOrder's "thingledger SalesOrder" domain) to prove they hold the buyer's key.

A gate keeps the challenges it issued in its state directory, each usable once and only until it expires:

    <state-dir>/challenges/pending/<challenge hex>.json   issued, not yet used
    <state-dir>/challenges/used/<challenge hex>.json      consumed by a pickup (kept to report reuse)
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeviceClientError
from .values import json_uint, parse_address, parse_bytes32, parse_json, parse_signature, show_value

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

CHALLENGE_FIELDS = ("chainId", "salesOrder", "orderId", "gateId", "challenge", "expiresAt")
RESPONSE_FIELDS = ("challenge", "signature")
# A buyer's signature of a challenge is also their on-chain consent to the release (SalesOrder checks it until
# `expiresAt`), so challenges are short-lived: the buyer's command refuses to sign a longer one.
MAX_TTL_SECONDS = 900
# Records stay this long after expiry so that a late reuse is reported as such, then they are pruned.
RECORD_GRACE_SECONDS = 86_400
MAX_DOCUMENT_LENGTH = 4_096


@dataclass(frozen=True)
class Challenge:
    """A gate's challenge for one order."""

    chain_id: int
    sales_order: str
    order_id: int
    gate_id: int
    challenge: bytes
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        """The challenge JSON object (field order as documented)."""
        return {
            "chainId": self.chain_id,
            "salesOrder": self.sales_order,
            "orderId": self.order_id,
            "gateId": self.gate_id,
            "challenge": "0x" + self.challenge.hex(),
            "expiresAt": self.expires_at,
        }

    def typed_message(self) -> dict[str, Any]:
        """The EIP-712 message the buyer signs."""
        from .typed_data import pickup_challenge_message

        return pickup_challenge_message(
            self.chain_id, self.sales_order, self.order_id, self.gate_id, self.challenge, self.expires_at
        )


@dataclass(frozen=True)
class ChallengeResponse:
    """A challenge and the buyer's signature of it."""

    challenge: Challenge
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"challenge": self.challenge.to_json(), "signature": "0x" + self.signature.hex()}


def new_challenge(chain_id: int, sales_order: str, order_id: int, gate_id: int, ttl: int, now: int) -> Challenge:
    """A fresh challenge with 32 random bytes, valid for `ttl` seconds from `now`."""
    if not 1 <= ttl <= MAX_TTL_SECONDS:
        raise DeviceClientError(f"challenge ttl must be between 1 and {MAX_TTL_SECONDS} seconds, got {ttl}")
    return Challenge(chain_id, sales_order, order_id, gate_id, secrets.token_bytes(32), now + ttl)


def challenge_from_json(document: Any, what: str = "challenge") -> Challenge:
    """Checks a decoded challenge JSON object."""
    fields = _exact_object(document, CHALLENGE_FIELDS, what)
    return Challenge(
        chain_id=json_uint(fields["chainId"], f"{what}: chainId"),
        sales_order=parse_address(fields["salesOrder"], f"{what}: salesOrder"),
        order_id=json_uint(fields["orderId"], f"{what}: orderId"),
        gate_id=json_uint(fields["gateId"], f"{what}: gateId"),
        challenge=parse_bytes32(fields["challenge"], f"{what}: challenge"),
        expires_at=json_uint(fields["expiresAt"], f"{what}: expiresAt", limit=2**64),
    )


def parse_challenge(text: str) -> Challenge:
    """Parses challenge JSON text."""
    return challenge_from_json(_load_json(text, "challenge"))


def parse_response(text: str) -> ChallengeResponse:
    """Parses challenge response JSON text: {"challenge": {...}, "signature": "0x..."}."""
    fields = _exact_object(_load_json(text, "challenge response"), RESPONSE_FIELDS, "challenge response")
    return ChallengeResponse(
        challenge=challenge_from_json(fields["challenge"], "challenge response: challenge"),
        signature=parse_signature(fields["signature"], "challenge response: signature"),
    )


def sign_challenge(account: LocalAccount, challenge: Challenge) -> ChallengeResponse:
    """The buyer's response: their EIP-712 signature of the challenge."""
    signed = account.sign_typed_data(full_message=challenge.typed_message())
    return ChallengeResponse(challenge=challenge, signature=bytes(signed.signature))


# secp256k1's group order halved: SalesOrder (OpenZeppelin ECDSA) refuses signatures with a larger s.
SECP256K1_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


def recover_signer(response: ChallengeResponse) -> str:
    """The address whose key signed the response, for a signature in the one form SalesOrder accepts
    on chain (65 bytes, low s, v 27 or 28): a gate must not accept what the release would refuse."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    signature = response.signature
    if len(signature) != 65 or signature[64] not in (27, 28) or int.from_bytes(signature[32:64], "big") > SECP256K1_HALF_ORDER:
        raise DeviceClientError(
            "challenge response: the signature is not in canonical form (65 bytes, low s, v 27 or 28)"
        )

    signable = encode_typed_data(full_message=response.challenge.typed_message())
    try:
        return str(Account.recover_message(signable, signature=response.signature))
    except Exception:  # eth-keys reports malformed signatures with several exception types
        raise DeviceClientError("challenge response: the signature is malformed (no signer can be recovered)") from None


def describe_time(timestamp: int) -> str:
    """A UTC timestamp for messages."""
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


class ChallengeStore:
    """The challenges a gate issued, in its state directory; each is consumed at most once."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir).expanduser() / "challenges"
        self.pending = self.root / "pending"
        self.used = self.root / "used"

    def save(self, challenge: Challenge, now: int) -> Path:
        """Stores a newly issued challenge (and prunes records long expired)."""
        try:
            for folder in (self.pending, self.used):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.prune(now)
            path = self._pending_path(challenge.challenge)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(challenge.to_json(), stream)
        except OSError as error:
            raise DeviceClientError(f"cannot store the challenge in {self.root}: {error.strerror or error}") from None
        return path

    def check(self, presented: Challenge, now: int) -> Challenge:
        """The stored challenge equal to `presented`, if it was issued here, is unused and unexpired."""
        name = "0x" + presented.challenge.hex()
        path = self._pending_path(presented.challenge)
        if not path.exists():
            if (self.used / path.name).exists():
                raise DeviceClientError(f"challenge {name} was already used")
            raise DeviceClientError(f"unknown challenge {name}: this gate did not issue it (or it was pruned)")
        try:
            stored = challenge_from_json(_load_json(path.read_text(encoding="utf-8"), str(path)), str(path))
        except OSError as error:
            raise DeviceClientError(f"cannot read challenge {path}: {error.strerror or error}") from None
        if stored != presented:
            raise DeviceClientError(f"challenge {name} was altered: the response does not match what this gate issued")
        if now > stored.expires_at:
            raise DeviceClientError(f"challenge {name} expired at {describe_time(stored.expires_at)}")
        return stored

    def consume(self, challenge: Challenge) -> None:
        """Marks the challenge used; only one process can ever succeed (an atomic rename)."""
        path = self._pending_path(challenge.challenge)
        try:
            os.rename(path, self.used / path.name)
        except FileNotFoundError:
            raise DeviceClientError(f"challenge 0x{challenge.challenge.hex()} was already used") from None
        except OSError as error:
            raise DeviceClientError(f"cannot consume challenge {path}: {error.strerror or error}") from None

    def prune(self, now: int) -> None:
        """Deletes records that expired more than a grace period ago."""
        for folder in (self.pending, self.used):
            for path in folder.glob("*.json"):
                try:
                    expires_at = json.loads(path.read_text(encoding="utf-8")).get("expiresAt", 0)
                    if not isinstance(expires_at, int) or expires_at + RECORD_GRACE_SECONDS < now:
                        path.unlink()
                except (OSError, ValueError, AttributeError, RecursionError):
                    continue

    def _pending_path(self, challenge: bytes) -> Path:
        return self.pending / f"{challenge.hex()}.json"


def _load_json(text: str, what: str) -> Any:
    return parse_json(text, what, max_length=MAX_DOCUMENT_LENGTH)


def _exact_object(document: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise DeviceClientError(f"{what}: expected a JSON object, got {show_value(document)}")
    missing = [name for name in names if name not in document]
    if missing:
        raise DeviceClientError(f"{what}: missing field(s) {', '.join(missing)}")
    unknown = [name for name in document if name not in names]
    if unknown:
        raise DeviceClientError(f"{what}: unknown field(s) {', '.join(show_value(name) for name in unknown)}")
    return document

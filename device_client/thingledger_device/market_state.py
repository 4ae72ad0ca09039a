"""ServiceMarket's offers and requests as the client reads them: decoded records, an offer's health as the
matching walk would judge it, and what `request-status` shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .market_events import device_label
from .report import Report

# What a listed offer's health is called: dead ones are pruned by the next walk that meets them.
ALIVE = "alive"
DEAD_HEALTH = ("expired", "supplierNotActive", "supplierOwnerChanged")


@dataclass(frozen=True)
class OfferInfo:
    """ServiceMarket.getOffer, decoded (links left out)."""

    offer_id: int
    device_id: int
    epoch: int
    valid_until: int
    units: int
    unit_price: int
    service_type: bytes

    @property
    def listed(self) -> bool:
        """An offer is in the matching lists exactly while it has units left."""
        return self.units != 0


@dataclass(frozen=True)
class ListedOffer:
    """A listed offer with its supplier device's key and its health at the listing's block."""

    offer: OfferInfo
    device_key: str
    health: str

    @property
    def alive(self) -> bool:
        return self.health not in DEAD_HEALTH

    def to_json(self) -> dict[str, Any]:
        offer = self.offer
        return {
            "offerId": offer.offer_id,
            "deviceId": offer.device_id,
            "device": device_label(offer.device_id),
            "deviceKey": self.device_key,
            "unitPrice": offer.unit_price,
            "units": offer.units,
            "validUntil": offer.valid_until,
            "alive": self.alive,
            "health": self.health,
        }

    def row(self) -> list[str]:
        """The offer as a row of the offers table."""
        from .challenge import describe_time

        offer = self.offer
        state = "alive" if self.alive else f"dead: {self.health}"
        return [
            str(offer.offer_id),
            device_label(offer.device_id),
            str(offer.unit_price),
            str(offer.units),
            describe_time(offer.valid_until),
            state,
        ]


@dataclass(frozen=True)
class RequestInfo:
    """ServiceMarket.getRequest, decoded."""

    request_id: int
    demander: str
    policy: str
    status: str
    deadline: int
    round: int
    fee_bps: int
    attester: str | None
    unit_price: int
    payee: str | None
    offer_id: int | None
    units: int
    service_type: bytes

    @property
    def agreed(self) -> bool:
        """Whether `unit_price` is an agreed price (else it is the request's maximum)."""
        return self.status in ("Matched", "Completed", "Refunded")

    @property
    def escrow(self) -> int:
        return self.unit_price * self.units if self.status in ("Open", "Matched") else 0


def offer_health(offer: OfferInfo, device_state: str, device_epoch: int, now: int) -> str:
    """What the matching walk would find in a listed offer at time `now`: dead (expired, supplier device not
    Active, supplier device owned by someone else since publication) or alive. The checks follow
    ServiceMarket._health's order."""
    if now > offer.valid_until:
        return "expired"
    if device_state != "Active":
        return "supplierNotActive"
    if device_epoch != offer.epoch:
        return "supplierOwnerChanged"
    return ALIVE


def request_report(request: RequestInfo, account: str | None, credit: int | None) -> Report:
    """What `request-status` shows: the request decoded, and the credit of the caller's account."""
    from .challenge import describe_time

    report = (
        Report(f"request {request.request_id}: {request.status}")
        .add("requestId", "request", request.request_id)
        .add("status", "status", request.status)
        .add("serviceType", "service type", "0x" + request.service_type.hex())
        .add("policy", "policy", request.policy)
        .add("demander", "demander", request.demander)
        .add("units", "units", request.units)
    )
    if request.agreed:
        report.add("agreedUnitPrice", "agreed unit price", request.unit_price, f"{request.unit_price} wei")
        report.add("maxUnitPrice", "max unit price", None)
    else:
        report.add("agreedUnitPrice", "agreed unit price", None)
        report.add("maxUnitPrice", "max unit price", request.unit_price, f"{request.unit_price} wei")
    report.add("escrow", "escrow held", request.escrow, f"{request.escrow} wei")
    report.add("offerId", "offer", request.offer_id)
    report.add("payee", "payee", request.payee)
    report.add("round", "round", request.round)
    report.add("feeBps", "protocol fee (bps)", request.fee_bps)
    report.add("deadline", "deadline", request.deadline, describe_time(request.deadline))
    report.add("attester", "attester", request.attester)
    report.add("account", "your account", account)
    report.add("credit", "your market credit", credit, None if credit is None else f"{credit} wei")
    return report

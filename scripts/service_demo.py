"""The field-service story of reference document 002, on ServiceMarket, on a local chain.

    ape run service_demo    (`./run.sh demo` runs it after the sales story; `./run.sh demo service` alone)

An infusion pump in a hospital reports a failed part and buys its own repair (document 002: part fails ->
service request -> repair -> automatic payment), through the service demand and supply matching of
document 004 (sections 2.2-2.4). Four technician devices of two service companies publish offers of the service
type "repair:infusion-pump" by signing them (a device lists one offer per service type): a gateway submits
their signatures, so devices need no gas. The pump's key posts the request with the money in escrow and
the policy LatestPublished; the technician the policy picks declines (its offer leaves the market), the
request is matched again, a flow analyzer device attests the repair with a signed sensor reading, and the
fee moves to the technician's company by contract. The hospital then
posts two more requests with the other policies on the same market. Every step is a row of the final table.

Why the pump's own key posts its request: the pump is the demander (document 002's smart equipment
generates the service request itself). The hospital funds that key with a service budget once; the budget
caps what the device can spend on its own, and the refund of any price difference comes back to it.
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from ape import accounts, chain
from eth_account import Account
from eth_utils import keccak
from rich.console import Console
from rich.table import Table
from thingledger_device.typed_data import (
    completion_message,
    decline_agreement_action_hash,
    device_action_message,
    provision_message,
    publish_offer_action_hash,
    record_tuple,
)

# Scripts are loaded by file, so the modules beside this one (deploy.py, _demo_story.py) come through sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_story import DemoFailure, Story  # noqa: E402
from deploy import deploy_contracts  # noqa: E402

SERVICE_NAME = "repair:infusion-pump"
SERVICE_TYPE = keccak(text=SERVICE_NAME)
POLICIES = ("LatestPublished", "LowestPrice", "EarliestPublished")
LATEST, LOWEST, EARLIEST = range(3)
ACTIVE = 2  # IDeviceRegistry.DeviceState.Active
MATCHED, COMPLETED = 2, 3  # IServiceMarket.RequestStatus
FEE_BPS = 100  # 1% protocol fee, credited to the operator
MILLI = 10**15  # 0.001 ETH
HOUR, DAY = 3600, 86_400

# Piped output (./run.sh demo | tee ...) gets wide tables rather than rich's 80-column default.
console = Console(width=160 if not sys.stdout.isatty() and "COLUMNS" not in os.environ else None)


class Device(NamedTuple):
    name: str
    key: Any  # eth_account LocalAccount: the device signs with it
    device_id: int
    owner: Any


def eth(wei: int) -> str:
    return f"{(Decimal(wei) / 10**18).normalize():f} ETH"


def main() -> None:
    try:
        story, policy_table, money_table = tell_story()
    except DemoFailure as failure:
        console.print(f"[bold red]service demo failed:[/] {failure}")
        sys.exit(1)
    console.print(story.table())
    console.print(policy_table)
    console.print(money_table)


def tell_story() -> tuple[Story, Table, Table]:
    story = Story("thingledger: the field service of document 002 on ServiceMarket (local chain)", console)
    admin, manufacturer, hospital, medfix, pumpcare, gateway = accounts.test_accounts[:6]
    companies = {medfix.address: "MedFix", pumpcare.address: "PumpCare", hospital.address: "hospital"}
    contracts, _ = deploy_contracts(admin, admin.address, (manufacturer.address,))
    registry, market = contracts["DeviceRegistry"], contracts["ServiceMarket"]
    chain_id = chain.chain_id
    story.tx("operator (admin)", f"deploy ServiceMarket {market.address[:10]}… (after DeviceRegistry, SalesOrder)",
             chain.get_receipt(market.txn_hash))
    story.tx("operator (admin)", f"set the protocol fee: {FEE_BPS / 100:g}% of each agreement, to the operator",
             market.setFee(admin, FEE_BPS, sender=admin))

    def device_auth(device: Device, action: bytes) -> tuple[int, bytes]:
        """The device's signed DeviceAction for ServiceMarket (a gateway submits it; the device pays no gas)."""
        deadline = chain.pending_timestamp + 600
        nonce = registry.getDevice(device.device_id).nonce
        message = device_action_message(chain_id, registry.address, device.device_id, market.address, action,
                                        nonce, deadline)
        return deadline, bytes(Account.sign_typed_data(device.key.key, full_message=message).signature)

    # ------------------------------------------------------------------ devices
    devices: dict[str, Device] = {}
    pump_key = accounts.test_accounts.generate_test_account()  # the pump's key also sends its own transactions
    fieldkit = "FieldKit-5 technician device"
    for name, model, key, owner in (
        ("pump", "InfuMed P-300 infusion pump", Account.from_key(pump_key.private_key), hospital),
        ("analyzer", "FlowCal-2 flow analyzer", Account.from_key(keccak(text="service demo analyzer")), hospital),
        *((f"{company.lower()}-{n}", fieldkit, Account.from_key(keccak(text=f"service demo {company} {n}")), owner)
          for company, owner in (("PumpCare", pumpcare), ("MedFix", medfix)) for n in (1, 2)),
    ):
        now = chain.pending_timestamp
        record = {"model": model, "serial": f"{model[:2].upper()}-{key.address[2:10]}",
                  "firmwareHash": keccak(text=f"{model} firmware 1.0"), "manufacturedAt": now,
                  "warrantyEnd": now + 3 * 365 * DAY, "metadataURI": f"ipfs://thingledger-demo/{name}.json"}
        message = provision_message(chain_id, registry.address, key.address, manufacturer.address, record, now + 600)
        signature = Account.sign_typed_data(key.key, full_message=message).signature
        story.tx("manufacturer", f"provision {name} {key.address[:10]}… ({model}, device-signed)",
                 registry.provision(key.address, record_tuple(record), now + 600, signature, sender=manufacturer))
        device_id = int(key.address, 16)
        story.tx("manufacturer", f"sell {name} to {companies[owner.address]}",
                 registry.transferFrom(manufacturer, owner, device_id, sender=manufacturer))
        story.tx(companies[owner.address], f"activate {name}", registry.activate(device_id, sender=owner))
        devices[name] = Device(name, key, device_id, owner)
    pump, analyzer = devices["pump"], devices["analyzer"]
    budget = 200 * MILLI
    story.tx("hospital", f"fund the pump's key with a service budget of {eth(budget)}",
             hospital.transfer(pump_key, budget))

    # ------------------------------------------------------------------ offers, device-signed, over a morning
    offers: dict[int, tuple[Device, int]] = {}  # offer id -> (supplier device, unit price)
    first_published = chain.pending_timestamp
    # One listed offer per device and service type: each technician device offers its own terms.
    for device_name, price, units, terms_note in (
        ("pumpcare-1", 40 * MILLI, 8, "standard visit"),
        ("medfix-1", 30 * MILLI, 8, "standard visit"),
        ("pumpcare-2", 45 * MILLI, 8, "on site within 2 h"),
        ("medfix-2", 28 * MILLI, 1, "last free hour today"),
    ):
        device = devices[device_name]
        valid_until = chain.pending_timestamp + 7 * DAY  # ServiceMarket accepts at most 30 days
        uri = f"ipfs://thingledger-demo/offers/{device_name}.json"
        terms = (SERVICE_TYPE, price, units, valid_until, uri)
        hint, found = market.findPriceHint(SERVICE_TYPE, price, 0, 32)
        auth = device_auth(device, publish_offer_action_hash(SERVICE_TYPE, price, units, valid_until, uri))
        receipt = market.publishOffer(device.device_id, terms, hint, auth, sender=gateway)
        offer_id = market.lastOfferId()
        offers[offer_id] = (device, price)
        at = (chain.blocks.head.timestamp - first_published) // 60
        story.tx("gateway", f"{device_name} signs offer #{offer_id}: {eth(price)}/h, {units} h, {terms_note} "
                 f"(t0+{at} min)", receipt)
        chain.mine(deltatime=45 * 60)

    picks: list[tuple[str, int, str, int]] = []  # (policy, request, walk, offer picked) for the policy table

    def supplier(offer_id: int) -> str:
        device = offers[offer_id][0]
        return f"#{offer_id} {device.name} ({companies[device.owner.address]}, {eth(offers[offer_id][1])}/h)"

    def walk(policy: int, max_price: int, units: int) -> tuple[int, list[str]]:
        """The walk IServiceMarket documents, replayed off chain to say why each offer was skipped."""
        ids, _ = market.listOffers(SERVICE_TYPE, policy, 0, 16)
        notes = []
        for offer_id in ids:
            offer = market.getOffer(offer_id)
            device = registry.getDevice(offer.deviceId)
            if offer.validUntil < chain.pending_timestamp or device.state != ACTIVE or device.epoch != offer.epoch:
                notes.append(f"#{offer_id} dead: pruned")
            elif offer.unitPrice > max_price:
                if policy == LOWEST:
                    notes.append(f"#{offer_id} above the maximum: the walk ends")
                    return 0, notes
                notes.append(f"#{offer_id} {eth(offer.unitPrice)}/h above the maximum: skipped")
            elif offer.units < units:
                notes.append(f"#{offer_id} only {offer.units} h left: skipped")
            else:
                notes.append(f"#{offer_id} taken")
                return offer_id, notes
        return 0, notes

    def post(demander: Any, actor: str, policy: int, units: int, max_price: int, attester: str, why: str) -> int:
        expected, notes = walk(policy, max_price, units)
        terms = (SERVICE_TYPE, units, max_price, chain.pending_timestamp + 3 * DAY, policy, attester)
        receipt = market.postRequest(terms, value=max_price * units, sender=demander)
        request_id = market.lastRequestId()
        picked = market.getRequest(request_id).offerId
        if picked != expected:
            raise DemoFailure(f"request {request_id} matched offer {picked}, the documented walk says {expected}")
        story.tx(actor, f"post request {request_id} ({why}): {units} h, ≤ {eth(max_price)}/h, "
                 f"{POLICIES[policy]} → offer {supplier(picked)}", receipt)
        console.print(f"    walk: {'; '.join(notes)}")
        picks.append((POLICIES[policy], request_id, "; ".join(notes), picked))
        return request_id

    def attest(request_id: int, reading: dict[str, Any], submitter: Any) -> None:
        """The analyzer signs a Completion over the hash of its reading; the technician's company submits it."""
        evidence = keccak(text=json.dumps(reading, sort_keys=True, separators=(",", ":")))
        request = market.getRequest(request_id)
        message = completion_message(chain_id, market.address, request_id, request.offerId, request.round, evidence)
        signature = Account.sign_typed_data(analyzer.key.key, full_message=message).signature
        story.tx(companies[submitter.address], f"submit the analyzer's signed Completion of request {request_id} "
                 f"(evidence {evidence.hex()[:10]}…: flow {reading['flow_ml_h']} ml/h)",
                 market.completeWithAttestation(request_id, evidence, signature, sender=submitter))
        if market.getRequest(request_id).status != COMPLETED:
            raise DemoFailure(f"request {request_id} is not Completed after the attestation")

    # ------------------------------------------------------------------ the pump fails and buys its repair
    max_price, units = 50 * MILLI, 2
    console.print("[bold]pump:[/] occlusion sensor failed (part OS-12); posting a service request")
    first = post(pump_key, "pump (device key)", LATEST, units, max_price, analyzer.key.address,
                 "occlusion sensor OS-12 failed")
    refund_first = market.creditOf(pump_key)
    console.print(f"    price difference credited to the pump at once: {eth(refund_first)}")

    request = market.getRequest(first)
    declining = offers[request.offerId][0]
    story.tx("gateway", f"{declining.name} signs: decline request {first} (its technician is on another call; "
             f"its offer #{request.offerId} leaves the market)",
             market.declineAgreement(first, device_auth(declining, decline_agreement_action_hash(first, request.round)),
                                     sender=gateway))
    if market.listedOfferOf(declining.device_id, SERVICE_TYPE) != 0:
        raise DemoFailure(f"offer {request.offerId} is still listed after its device declined")
    expected, notes = walk(LATEST, request.unitPrice, units)
    notes.insert(0, f"(#{request.offerId} left with its decline)")
    receipt = market.matchRequest(first, sender=pump_key)
    rematched = market.getRequest(first).offerId
    if rematched != expected or rematched == request.offerId:
        raise DemoFailure(f"request {first} re-matched offer {rematched}, the documented walk says {expected}")
    story.tx("pump (device key)", f"match request {first} again → offer {supplier(rematched)}", receipt)
    console.print(f"    walk: {'; '.join(notes)}")
    picks.append(("LatestPublished, after the decline", first, "; ".join(notes), rematched))

    technician = offers[rematched][0]
    console.print(f"[bold]{technician.name}:[/] replaces OS-12 on site; the analyzer measures the pump's flow")
    attest(first, {"pump": pump.key.address, "part": "OS-12", "flow_ml_h": 125.0, "set_ml_h": 125.0,
                   "deviation_pct": 0.0, "occlusion_alarm": False, "measured_at": chain.pending_timestamp},
           technician.owner)

    # ------------------------------------------------------------------ the other two policies, same market
    console.print("[bold]later that week:[/] two more pumps fail; biomedical engineering posts their requests")
    by_hospital = [
        post(hospital, "hospital", LOWEST, units, max_price, analyzer.key.address, "ward B pump, battery"),
        post(hospital, "hospital", EARLIEST, units, max_price, analyzer.key.address, "ward C pump, keypad"),
    ]
    story.tx("hospital", f"confirm request {by_hospital[0]} itself (the demander's path; evidence: work order hash)",
             market.confirmCompletion(by_hospital[0], keccak(text="work order WB-0412 signed"), sender=hospital))
    owner = offers[market.getRequest(by_hospital[1]).offerId][0].owner
    attest(by_hospital[1], {"pump": "ward C", "part": "keypad", "flow_ml_h": 99.8, "set_ml_h": 100.0,
                            "deviation_pct": -0.2, "occlusion_alarm": False, "measured_at": chain.pending_timestamp},
           owner)

    # ------------------------------------------------------------------ money out
    money = Table(title="money: every credit withdrawn, ServiceMarket ends empty")
    for column in ("account", "role", "escrow paid in", "withdrew"):
        money.add_column(column, justify="left" if column in ("account", "role") else "right")
    paid_in = {pump_key.address: max_price * units, hospital.address: 2 * max_price * units}
    for who, name, role in (
        (pump_key, "pump (device key)", "demander: refund of the price differences"),
        (hospital, "hospital", "demander: refunds of requests 2 and 3"),
        (medfix, "MedFix", "supplier: agreed price minus the fee"),
        (pumpcare, "PumpCare", "supplier: agreed price minus the fee"),
        (admin, "operator", f"protocol fee ({FEE_BPS / 100:g}%)"),
    ):
        credit = market.creditOf(who)
        if credit:
            story.tx(name, f"withdraw {eth(credit)}", market.withdraw(sender=who))
        money.add_row(name, role, eth(paid_in.get(who.address, 0)), eth(credit))
    if market.balance != 0:
        raise DemoFailure(f"{eth(market.balance)} is left in ServiceMarket after every withdrawal")

    policies = Table(title=f"one market, three policies: which offer each request took ({SERVICE_NAME})")
    for column in ("policy", "request", "walk (offers looked at, in policy order)", "offer picked", "device",
                   "company", "price"):
        policies.add_column(column)
    for policy, request_id, notes, offer_id in picks:
        device, price = offers[offer_id]
        policies.add_row(policy, str(request_id), notes, f"#{offer_id}", device.name, companies[device.owner.address],
                         f"{eth(price)}/h")
    return story, policies, money

"""The demand side of ServiceMarket: a demander posts a request (paying its deposit), raises its maximum,
confirms completion, cancels or takes a refund; an attester signs the request's Completion statement;
anyone may submit that statement or run the matching again; every account withdraws its credit.

A demander is whoever sends the call: a device's key or any account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .contracts import MATCHING_POLICIES
from .errors import DeviceClientError
from .market_values import check_timestamp
from .report import Report

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from .chain import TransactionResult
    from .market import MarketClient
    from .market_state import RequestInfo

ZERO_ADDRESS = "0x" + "00" * 20


def _with_match(market: MarketClient, report: Report, transaction: TransactionResult, request_id: int) -> Report:
    """Adds the match a transaction made, if any, to `report` (and says so in its title)."""
    matches = market.events(transaction, "RequestMatched")
    if not matches:
        return report.add("status", "status", "Open").add("offerId", "offer", None, "open, no offer yet")
    match = matches[0].args
    report.title = f"request {request_id} matched offer {match['offerId']}"
    return (
        report.add("status", "status", "Matched")
        .add("offerId", "offer", match["offerId"])
        .add("agreedUnitPrice", "agreed unit price", match["unitPrice"], f"{match['unitPrice']} wei")
        .add("refunded", "credited back", match["refunded"], f"{match['refunded']} wei")
        .add("payee", "supplier payee", match["payee"])
        .add("round", "round", match["round"])
    )


def _completed(
    market: MarketClient, transaction: TransactionResult, what: str, request_id: int, paid_by: str
) -> Report:
    a = market.event(transaction, "RequestCompleted", what).args
    return (
        Report(f"request {request_id} completed")
        .add("requestId", "request", request_id)
        .add("offerId", "offer", a["offerId"])
        .add("confirmedBy", "confirmed by", a["confirmedBy"])
        .add("evidence", "evidence", "0x" + bytes(a["evidence"]).hex())
        .add("payee", "payee", a["payee"])
        .add("supplierAmount", "credited to the payee", a["supplierAmount"], f"{a['supplierAmount']} wei")
        .add("fee", "protocol fee", a["fee"], f"{a['fee']} wei")
        .add_transaction(transaction, paid_by)
    )


def post_request(
    market: MarketClient,
    demander: LocalAccount,
    service_type: bytes,
    units: int,
    max_unit_price: int,
    policy: int,
    deadline_in: int,
    attester: str | None,
    now: int,
) -> Report:
    """Posts a request with its deposit (`max_unit_price * units`), matched at once if an offer fits."""
    from .challenge import describe_time

    deposit = max_unit_price * units
    chain_now = max(now, market.chain.latest_timestamp())
    deadline = check_timestamp(chain_now + deadline_in, "the request's deadline", chain_now)
    web3 = market.chain.web3
    balance = int(market.chain.rpc("eth_getBalance", lambda: web3.eth.get_balance(demander.address)))
    if balance < deposit:
        raise DeviceClientError(
            f"{demander.address} holds {balance} wei but the deposit is {deposit} wei "
            f"({units} units at most {max_unit_price} wei), plus gas"
        )
    terms = (service_type, units, max_unit_price, deadline, policy, attester or ZERO_ADDRESS)
    what = "ServiceMarket.postRequest"
    transaction = market.transact(demander, market.contract.functions.postRequest(terms), what, value=deposit)
    request_id = int(market.event(transaction, "RequestPosted", what).args["requestId"])
    report = Report(f"request {request_id} open, no offer yet").add("requestId", "request", request_id)
    return (
        _with_match(market, report, transaction, request_id)
        .add("serviceType", "service type", "0x" + service_type.hex())
        .add("policy", "policy", MATCHING_POLICIES[policy])
        .add("units", "units", units)
        .add("maxUnitPrice", "max unit price", max_unit_price, f"{max_unit_price} wei")
        .add("deposit", "deposit", deposit, f"{deposit} wei")
        .add("deadline", "deadline", deadline, describe_time(deadline))
        .add("attester", "attester", attester)
        .add("demander", "demander", demander.address)
        .add_transaction(transaction, demander.address)
    )


def raise_max_unit_price(market: MarketClient, demander: LocalAccount, request_id: int, max_unit_price: int) -> Report:
    """Raises an Open request's maximum unit price (sending the extra escrow), then matches it again."""
    request = market.request(request_id)
    if request.status != "Open":
        raise DeviceClientError(f"request {request_id} is {request.status}, not Open: its maximum is fixed")
    if max_unit_price <= request.unit_price:
        raise DeviceClientError(
            f"--max-unit-price: {max_unit_price} wei does not raise request {request_id}'s maximum "
            f"of {request.unit_price} wei"
        )
    added = (max_unit_price - request.unit_price) * request.units
    what = f"ServiceMarket.raiseMaxUnitPrice({request_id})"
    function = market.contract.functions.raiseMaxUnitPrice(request_id, max_unit_price)
    transaction = market.transact(demander, function, what, value=added)
    report = (
        Report(f"request {request_id} raised, still open, no offer yet")
        .add("requestId", "request", request_id)
        .add("maxUnitPrice", "max unit price", max_unit_price, f"{max_unit_price} wei")
        .add("added", "added to the escrow", added, f"{added} wei")
    )
    return _with_match(market, report, transaction, request_id).add_transaction(transaction, demander.address)


def confirm(market: MarketClient, demander: LocalAccount, request_id: int, evidence: bytes) -> Report:
    """The demander confirms the agreement was delivered: the supplier's payee is credited."""
    what = f"ServiceMarket.confirmCompletion({request_id})"
    transaction = market.transact(demander, market.contract.functions.confirmCompletion(request_id, evidence), what)
    return _completed(market, transaction, what, request_id, demander.address)


def attestation(
    market: MarketClient, attester: LocalAccount, request_id: int, evidence: bytes
) -> tuple[RequestInfo, bytes]:
    """The attester's signature of the Completion statement of the request's current agreement (its offer
    and round, read from the request)."""
    from .typed_data import completion_message

    request = market.request(request_id)
    if request.status != "Matched" or request.offer_id is None:
        raise DeviceClientError(f"request {request_id} is {request.status}, not Matched: no agreement to attest")
    if request.attester != attester.address:
        named = f"its attester is {request.attester}" if request.attester else "it names no attester"
        raise DeviceClientError(f"key {attester.address} is not the attester of request {request_id}: {named}")
    message = completion_message(
        market.chain.deployment.chain_id, market.address, request_id, request.offer_id, request.round, evidence
    )
    return request, bytes(attester.sign_typed_data(full_message=message).signature)


def complete_with_attestation(
    market: MarketClient, payer: LocalAccount, request_id: int, evidence: bytes, signature: bytes
) -> Report:
    """Submits an attester's Completion signature (anyone may)."""
    what = f"ServiceMarket.completeWithAttestation({request_id})"
    function = market.contract.functions.completeWithAttestation(request_id, evidence, signature)
    transaction = market.transact(payer, function, what)
    return _completed(market, transaction, what, request_id, payer.address)


def _pay_back(
    market: MarketClient, demander: LocalAccount, request_id: int, method: str, event: str, outcome: str
) -> Report:
    """Sends `ServiceMarket.<method>(request_id)` from the demander and reports the amount its `event` says
    was paid back; the report's title is "request <id> <outcome>"."""
    what = f"ServiceMarket.{method}({request_id})"
    transaction = market.transact(demander, getattr(market.contract.functions, method)(request_id), what)
    amount = market.event(transaction, event, what).args["amount"]
    return (
        Report(f"request {request_id} {outcome}")
        .add("requestId", "request", request_id)
        .add("amount", "paid back", amount, f"{amount} wei")
        .add_transaction(transaction, demander.address)
    )


def cancel_request(market: MarketClient, demander: LocalAccount, request_id: int) -> Report:
    """The demander cancels an Open request; the deposit comes back at once."""
    return _pay_back(market, demander, request_id, "cancelRequest", "RequestCancelled", "cancelled")


def refund(market: MarketClient, demander: LocalAccount, request_id: int) -> Report:
    """The demander takes back the escrow of an agreement not completed by its deadline."""
    return _pay_back(market, demander, request_id, "refund", "RequestRefunded", "refunded")


def match_request(market: MarketClient, caller: LocalAccount, request_id: int) -> Report:
    """Runs an Open request's matching policy again (anyone may)."""
    what = f"ServiceMarket.matchRequest({request_id})"
    transaction = market.transact(caller, market.contract.functions.matchRequest(request_id), what)
    report = Report(f"request {request_id} still open, no offer yet").add("requestId", "request", request_id)
    return _with_match(market, report, transaction, request_id).add_transaction(transaction, caller.address)


def withdraw_credit(market: MarketClient, account: LocalAccount) -> Report:
    """Pays `account`'s whole market credit to it."""
    credit = market.credit_of(account.address)
    if credit == 0:
        raise DeviceClientError(f"{account.address} has no market credit to withdraw")
    what = "ServiceMarket.withdraw()"
    transaction = market.transact(account, market.contract.functions.withdraw(), what)
    amount = market.event(transaction, "Withdrawn", what).args["amount"]
    return (
        Report(f"{amount} wei withdrawn")
        .add("account", "account", account.address)
        .add("amount", "amount", amount, f"{amount} wei")
        .add_transaction(transaction, account.address)
    )

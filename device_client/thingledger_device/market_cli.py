"""The market commands of thingledger-device (ServiceMarket):

    offers               list a service type's offers in a policy's order; --watch follows its events
    publish-offer        a supplier device publishes an offer (signed DeviceAction)
    update-offer-price   ... changes an offer's unit price (signed)
    withdraw-offer       ... withdraws an offer (signed)
    decline              ... declines the agreement of a request matched with one of its offers (signed)
    request              a demander posts a request with its deposit; prints the offer it matched
    confirm              the demander confirms completion (the supplier's payee is credited)
    attest               the request's attester signs its Completion statement (and submits it)
    raise-max-price      the demander raises an Open request's maximum unit price (and it is matched again)
    cancel-request       the demander cancels an Open request (deposit back)
    refund               the demander takes back the escrow after an agreement's deadline
    match-request        anyone runs an Open request's matching again
    request-status       a request decoded, and the caller's market credit
    withdraw-credit      pays out an account's market credit

The supplier device's key is --keystore; its signed actions are sent with its own gas unless
--gas-keystore names an account that pays. Demanders and credit holders act for themselves: --from-keystore,
else the device key. Service types are names (hashed with keccak256 of their UTF-8 text) or 0x and 64
hex digits.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .arguments import ArgumentParser, Handler, non_negative_int, positive_int, positive_seconds
from .command_steps import (
    FROM_PASSWORD_ENV,
    GAS_PASSWORD_ENV,
    acting_account,
    acting_address,
    chain_of,
    deployment_of,
    device_account,
    gas_payer,
)
from .errors import EXIT_USAGE, DeviceClientError
from .market_values import POLICY_OPTIONS, UINT40_MAX, ZERO_BYTES32
from .output import Output

if TYPE_CHECKING:
    from .market import MarketClient
    from .report import Report

CommandFactory = Callable[[str, Handler, str], ArgumentParser]
MAX_LIST_LIMIT = 1_000
DEFAULT_POLL_SECONDS = 2.0


def _market(args: argparse.Namespace) -> MarketClient:
    """ServiceMarket on the checked chain; a deployment file without it fails before any RPC."""
    deployment_of(args).require_service_market()
    chain = chain_of(args)
    from .market import MarketClient

    return MarketClient(chain)


def _show(out: Output, report: Report) -> int:
    out.result(report.to_json(), report.title, report.rows())
    return 0


def _evidence(args: argparse.Namespace) -> bytes:
    from .market_values import evidence_of_file, parse_evidence

    if args.evidence_file is not None:
        return evidence_of_file(args.evidence_file)
    if args.evidence is not None:
        return parse_evidence(args.evidence)
    return ZERO_BYTES32


# ---------------------------------------------------------------------- offers


def cmd_offers(args: argparse.Namespace, out: Output) -> int:
    from .contracts import MATCHING_POLICIES
    from .market_values import parse_service_type, policy_index

    watch_options = (args.max_events, args.timeout, args.poll, args.from_block)
    if not args.watch and any(option is not None for option in watch_options):
        raise DeviceClientError(
            "--max-events, --timeout, --poll and --from-block go with --watch", exit_code=EXIT_USAGE
        )
    if args.limit > MAX_LIST_LIMIT:
        raise DeviceClientError(f"--limit: at most {MAX_LIST_LIMIT}", exit_code=EXIT_USAGE)
    service = parse_service_type(args.service_type)
    policy = policy_index(args.order)
    market = _market(args)
    block = market.chain.block_number()
    listing = market.listing(service.type_id, policy, args.limit, block)
    listed = market.listed_count(service.type_id, block)
    if out.json_mode:
        out.json(
            {
                **service.to_json(),
                "order": MATCHING_POLICIES[policy],
                "blockNumber": block,
                "listed": listed,
                "offers": [offer.to_json() for offer in listing],
            }
        )
    else:
        shown = f"{len(listing)} of {listed}" if len(listing) < listed else str(listed)
        out.grid(
            f"{shown} offer(s) of {service.describe()} in {MATCHING_POLICIES[policy]} order at block {block}",
            ("offer", "device", "unit price (wei)", "units", "valid until", "state"),
            [offer.row() for offer in listing],
            "no offers listed",
        )
    if args.watch:
        _watch(market, service.type_id, block + 1 if args.from_block is None else args.from_block, args, out)
    return 0


def _watch(market: MarketClient, service_type: bytes, start_block: int, args: argparse.Namespace, out: Output) -> None:
    from .market_watch import MarketWatch

    watch = MarketWatch(market, service_type, start_block, args.poll or DEFAULT_POLL_SECONDS)
    out.note(f"watching from block {start_block} (Ctrl-C to stop)")
    count = 0
    events = watch.events(args.timeout)
    try:
        for event in events:
            if out.json_mode:
                out.json(event.to_json())
            else:
                out.markup(event.describe())
            count += 1
            if args.max_events is not None and count >= args.max_events:
                break
    except KeyboardInterrupt:  # the normal way to stop watching
        pass
    finally:
        events.close()  # removes the node's filters
    out.note(f"stopped after {count} event(s), read with {'filters' if watch.mode == 'filters' else 'eth_getLogs'}")


# ---------------------------------------------------------------------- supplier device


def cmd_publish_offer(args: argparse.Namespace, out: Output) -> int:
    from .market_supplier import publish_offer
    from .market_values import parse_service_type, parse_unit_price, parse_units

    service = parse_service_type(args.service_type)
    unit_price = parse_unit_price(args.unit_price)
    units = parse_units(args.units)
    if args.valid_until is not None and args.valid_until > UINT40_MAX:
        raise DeviceClientError(f"--valid-until: {args.valid_until} is out of range (at most {UINT40_MAX})")
    device = device_account(args)
    payer = gas_payer(args, device)
    report = publish_offer(
        _market(args), device, payer, service.type_id, unit_price, units, args.valid_for, args.valid_until,
        args.metadata_uri, int(time.time()),
    )  # fmt: skip
    report.add("serviceName", "service name", service.name, after="serviceType")
    return _show(out, report)


def cmd_update_offer_price(args: argparse.Namespace, out: Output) -> int:
    from .market_supplier import update_offer_price
    from .market_values import parse_unit_price

    unit_price = parse_unit_price(args.unit_price)
    device = device_account(args)
    payer = gas_payer(args, device)
    return _show(out, update_offer_price(_market(args), device, payer, args.offer, unit_price, int(time.time())))


def cmd_withdraw_offer(args: argparse.Namespace, out: Output) -> int:
    from .market_supplier import withdraw_offer

    device = device_account(args)
    payer = gas_payer(args, device)
    return _show(out, withdraw_offer(_market(args), device, payer, args.offer, int(time.time())))


def cmd_decline(args: argparse.Namespace, out: Output) -> int:
    from .market_supplier import decline

    device = device_account(args)
    payer = gas_payer(args, device)
    return _show(out, decline(_market(args), device, payer, args.request, int(time.time())))


# ---------------------------------------------------------------------- demander, attester, anyone


def cmd_request(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import post_request
    from .market_values import parse_service_type, parse_unit_price, parse_units, policy_index
    from .values import parse_address

    service = parse_service_type(args.service_type)
    units = parse_units(args.units)
    max_unit_price = parse_unit_price(args.max_unit_price, "--max-unit-price")
    attester = parse_address(args.attester, "--attester") if args.attester else None
    demander = acting_account(args)
    report = post_request(
        _market(args), demander, service.type_id, units, max_unit_price, policy_index(args.policy), args.deadline_in,
        attester, int(time.time()),
    )  # fmt: skip
    report.add("serviceName", "service name", service.name, after="serviceType")
    return _show(out, report)


def cmd_confirm(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import confirm

    evidence = _evidence(args)
    return _show(out, confirm(_market(args), acting_account(args), args.request, evidence))


def cmd_attest(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import attestation, complete_with_attestation
    from .report import Report

    evidence = _evidence(args)
    attester = device_account(args)
    market = _market(args)
    request, signature = attestation(market, attester, args.request, evidence)
    if args.print_only:
        report = (
            Report(f"completion statement of request {args.request} signed")
            .add("requestId", "request", request.request_id)
            .add("offerId", "offer", request.offer_id)
            .add("round", "round", request.round)
            .add("evidence", "evidence", "0x" + evidence.hex())
            .add("attester", "attester", attester.address)
            .add("serviceMarket", "ServiceMarket", market.address)
            .add("chainId", "chain", market.chain.deployment.chain_id)
            .add("signature", "signature", "0x" + signature.hex())
        )
        return _show(out, report)
    payer = gas_payer(args, attester)
    return _show(out, complete_with_attestation(market, payer, args.request, evidence, signature))


def cmd_raise_max_price(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import raise_max_unit_price
    from .market_values import parse_unit_price

    max_unit_price = parse_unit_price(args.max_unit_price, "--max-unit-price")
    return _show(out, raise_max_unit_price(_market(args), acting_account(args), args.request, max_unit_price))


def cmd_cancel_request(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import cancel_request

    return _show(out, cancel_request(_market(args), acting_account(args), args.request))


def cmd_refund(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import refund

    return _show(out, refund(_market(args), acting_account(args), args.request))


def cmd_match_request(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import match_request

    return _show(out, match_request(_market(args), acting_account(args), args.request))


def cmd_request_status(args: argparse.Namespace, out: Output) -> int:
    from .market_state import request_report

    market = _market(args)
    request = market.request(args.request)
    account = acting_address(args)
    credit = market.credit_of(account) if account is not None else None
    return _show(out, request_report(request, account, credit))


def cmd_withdraw_credit(args: argparse.Namespace, out: Output) -> int:
    from .market_demand import withdraw_credit

    return _show(out, withdraw_credit(_market(args), acting_account(args)))


# ---------------------------------------------------------------------- parser


def _gas_options(sub: ArgumentParser) -> None:
    sub.add_argument("--gas-keystore", metavar="PATH", help="account paying the gas (default: the device key)")
    sub.add_argument(
        "--gas-password-file",
        metavar="PATH",
        help=f"password of the gas keystore (else env {GAS_PASSWORD_ENV}, else a prompt)",
    )


def _from_options(sub: ArgumentParser, who: str) -> None:
    sub.add_argument("--from-keystore", metavar="PATH", help=f"{who} (default: the device key, --keystore)")
    sub.add_argument(
        "--from-password-file",
        metavar="PATH",
        help=f"password of --from-keystore (else env {FROM_PASSWORD_ENV}, else a prompt)",
    )


def _service_type_option(sub: ArgumentParser) -> None:
    sub.add_argument(
        "--service-type",
        required=True,
        metavar="T",
        help="a name (stands for keccak256 of its UTF-8 text) or 0x and 64 hex digits",
    )


def _request_option(sub: ArgumentParser) -> None:
    sub.add_argument("--request", required=True, type=positive_int, metavar="ID", help="the request id")


def _evidence_options(sub: ArgumentParser, required: bool) -> None:
    group = sub.add_mutually_exclusive_group(required=required)
    group.add_argument("--evidence", metavar="HEX32", help="evidence hash: 0x and 64 hex digits")
    group.add_argument("--evidence-file", metavar="PATH", help="file whose keccak256 is the evidence hash")


def add_market_commands(command: CommandFactory) -> None:
    """Adds the market subcommands through the CLI's `command(name, handler, help)` factory."""
    offers = command("offers", cmd_offers, "list a service type's listed offers in a policy's order (--watch: follow)")
    _service_type_option(offers)
    offers.add_argument("--order", choices=POLICY_OPTIONS, default="lowest", help="walk order (default lowest)")
    offers.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N offers (default 20)")
    offers.add_argument("--watch", action="store_true", help="then print the market's events as they arrive")
    offers.add_argument("--max-events", type=positive_int, metavar="N", help="with --watch: stop after N events")
    offers.add_argument("--timeout", type=positive_seconds, metavar="S", help="with --watch: stop after S seconds")
    offers.add_argument(
        "--from-block",
        type=non_negative_int,
        metavar="N",
        help="with --watch: report events from block N on (default: those after the listing), e.g. to catch up",
    )
    offers.add_argument(
        "--poll",
        type=positive_seconds,
        metavar="S",
        help=f"with --watch: poll every S seconds (default {DEFAULT_POLL_SECONDS:g})",
    )

    publish = command("publish-offer", cmd_publish_offer, "publish an offer of this supplier device (signed action)")
    _service_type_option(publish)
    publish.add_argument("--unit-price", required=True, metavar="WEI", help="price per unit in wei (1 to 2^96-1)")
    publish.add_argument("--units", required=True, metavar="N", help="units offered (1 to 2^32-1)")
    validity = publish.add_mutually_exclusive_group(required=True)
    validity.add_argument("--valid-for", type=positive_int, metavar="SECONDS", help="valid for SECONDS from now")
    validity.add_argument("--valid-until", type=positive_int, metavar="TS", help="valid until unix time TS")
    publish.add_argument("--metadata-uri", default="", metavar="URI", help="emitted with the offer (not stored)")
    _gas_options(publish)

    update = command("update-offer-price", cmd_update_offer_price, "change the unit price of an offer (signed action)")
    update.add_argument("--offer", required=True, type=positive_int, metavar="ID", help="the offer id")
    update.add_argument("--unit-price", required=True, metavar="WEI", help="new price per unit in wei")
    _gas_options(update)

    withdraw = command("withdraw-offer", cmd_withdraw_offer, "withdraw an offer of this device (signed action)")
    withdraw.add_argument("--offer", required=True, type=positive_int, metavar="ID", help="the offer id")
    _gas_options(withdraw)

    decline = command("decline", cmd_decline, "decline a request matched with this device's offer (signed action)")
    _request_option(decline)
    _gas_options(decline)

    request = command("request", cmd_request, "post a request with its deposit; prints the offer it matched")
    _service_type_option(request)
    request.add_argument("--units", required=True, metavar="N", help="units wanted (1 to 2^32-1)")
    request.add_argument("--max-unit-price", required=True, metavar="WEI", help="the most to pay per unit, in wei")
    request.add_argument("--policy", choices=POLICY_OPTIONS, required=True, help="which offer the request takes")
    request.add_argument(
        "--deadline-in", required=True, type=positive_int, metavar="SECONDS", help="matching and completion deadline"
    )
    request.add_argument("--attester", metavar="ADDR", help="who may confirm completion by signing (e.g. a sensor)")
    _from_options(request, "the demander, who pays the deposit")

    confirm = command("confirm", cmd_confirm, "the demander confirms completion (the supplier is credited)")
    _request_option(confirm)
    _evidence_options(confirm, required=False)
    _from_options(confirm, "the demander")

    attest = command("attest", cmd_attest, "the attester (--keystore) signs completion of a request and submits it")
    _request_option(attest)
    _evidence_options(attest, required=True)
    attest.add_argument("--print-only", action="store_true", help="print the signature, send nothing")
    _gas_options(attest)

    raise_max = command("raise-max-price", cmd_raise_max_price, "raise an Open request's maximum unit price")
    _request_option(raise_max)
    raise_max.add_argument("--max-unit-price", required=True, metavar="WEI", help="the new maximum, in wei")
    _from_options(raise_max, "the demander, who pays the extra escrow")

    for name, handler, help_text, who in (
        ("cancel-request", cmd_cancel_request, "the demander cancels an Open request (deposit back)", "the demander"),
        ("refund", cmd_refund, "the demander takes the escrow back after the deadline", "the demander"),
        ("match-request", cmd_match_request, "run an Open request's matching again (anyone)", "who sends it"),
    ):
        sub = command(name, handler, help_text)
        _request_option(sub)
        _from_options(sub, who)

    status = command("request-status", cmd_request_status, "show a request and your market credit")
    _request_option(status)
    status.add_argument("--from-keystore", metavar="PATH", help="whose credit to show (default: the device key)")

    credit = command("withdraw-credit", cmd_withdraw_credit, "withdraw an account's market credit")
    _from_options(credit, "the account whose credit it is (a supplier's owner, a demander)")

"""thingledger-device: the warehouse gate / IoT device side of thingledger.

    thingledger-device keygen | address | sign-provisioning | status | challenge | verify | pickup
    thingledger-device offers | publish-offer | update-offer-price | withdraw-offer | decline | request |
                       confirm | attest | raise-max-price | cancel-request | refund | match-request |
                       request-status | withdraw-credit        (the service market: market_cli.py)

Every subcommand takes --deployment, --rpc, --keystore, --password-file, --state-dir and --json.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import ArgumentParser, Handler, non_negative_int, positive_int, read_input, run
from .command_steps import GAS_PASSWORD_ENV, chain_of, deployment_of, device_account, device_address, gas_payer
from .errors import DeviceClientError
from .output import Output

if TYPE_CHECKING:
    from .challenge import ChallengeResponse, ChallengeStore
    from .receipt import Receipt

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_STATE_DIR = "~/.thingledger"
PROVISIONING_SIGNATURE_LIFETIME = 3600


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


# ---------------------------------------------------------------------- shared steps (more in command_steps.py)


def _store(args: argparse.Namespace) -> ChallengeStore:
    from .challenge import ChallengeStore

    return ChallengeStore(args.state_dir)


def _receipt(args: argparse.Namespace) -> Receipt:
    from .receipt import parse_receipt

    return parse_receipt(args.receipt)


def _response(args: argparse.Namespace) -> ChallengeResponse:
    from .challenge import parse_response

    return parse_response(read_input(args.response, "challenge response"))


# ---------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace, out: Output) -> int:
    from .keystore import PASSWORD_ENV, create_keystore, resolve_password

    if not args.keystore:
        raise DeviceClientError("keygen needs --keystore PATH (or THINGLEDGER_KEYSTORE)")
    if Path(args.keystore).exists():
        raise DeviceClientError(f"keystore {args.keystore} already exists: refusing to overwrite it")
    password = resolve_password(
        args.password_file, env_name=PASSWORD_ENV, purpose=f"new keystore {args.keystore}", confirm=True
    )
    address = create_keystore(args.keystore, password)
    if out.json_mode:
        out.json({"address": address, "keystore": str(args.keystore)})
    else:
        out.line(address)
        out.note(f"new device key written to {args.keystore} (mode 0600)")
    return 0


def cmd_address(args: argparse.Namespace, out: Output) -> int:
    address = device_address(args)
    if out.json_mode:
        out.json({"address": address})
    else:
        out.line(address)
    return 0


def cmd_sign_provisioning(args: argparse.Namespace, out: Output) -> int:
    from .provisioning import load_record, sign_provisioning
    from .values import parse_address

    deployment = deployment_of(args)
    manufacturer = parse_address(args.manufacturer, "--manufacturer")
    record = load_record(args.record)
    deadline = args.deadline if args.deadline is not None else int(time.time()) + PROVISIONING_SIGNATURE_LIFETIME
    payload = sign_provisioning(device_account(args), deployment, manufacturer, record, deadline)
    out.json(payload)
    out.note(f"provisioning signature of {payload['key']} for manufacturer {manufacturer}, valid until {deadline}")
    return 0


def cmd_status(args: argparse.Namespace, out: Output) -> int:
    from .status import read_status

    address = device_address(args)
    status = read_status(chain_of(args), address)
    out.result(status, "device status", list(status.items()))
    return 0


def cmd_challenge(args: argparse.Namespace, out: Output) -> int:
    from .challenge import describe_time
    from .pickup import issue_challenge

    receipt = _receipt(args)
    address = device_address(args)
    store = _store(args)
    challenge = issue_challenge(chain_of(args), address, receipt, store, args.ttl, int(time.time()))
    out.json(challenge.to_json())
    out.note(
        f"challenge for order {challenge.order_id} at gate {challenge.gate_id}, "
        f"valid until {describe_time(challenge.expires_at)}: the buyer signs it with `thingledger-buyer sign-challenge`"
    )
    return 0


def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    from .pickup import verify_pickup

    receipt = _receipt(args)
    response = _response(args)
    address = device_address(args)
    verified = verify_pickup(chain_of(args), address, receipt, response, _store(args), int(time.time()))
    document = verified.to_json()
    out.result(document, f"pickup of order {verified.order.order_id} verified", verified.rows())
    return 0


def cmd_pickup(args: argparse.Namespace, out: Output) -> int:
    import sys

    from .actuator import make_actuator
    from .pickup import run_pickup

    receipt = _receipt(args)
    response = _response(args)
    actuator = make_actuator(
        args.actuator,
        state_dir=args.state_dir,
        gpio_pin=args.gpio_pin,
        pulse_seconds=args.gpio_pulse,
        echo=None if out.json_mode else sys.stderr,
    )
    device = device_account(args)
    result = run_pickup(
        chain_of(args),
        device,
        gas_payer(args, device),
        receipt,
        response,
        _store(args),
        actuator,
        args.actuator,
        int(time.time()),
    )
    document = result.to_json()
    out.result(document, f"order {result.verified.order.order_id} released", result.rows())
    return 0


# ---------------------------------------------------------------------- parser


def _common_options() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--deployment",
        default=os.environ.get("THINGLEDGER_DEPLOYMENT"),
        metavar="PATH",
        help="deployment JSON written by the deploy script (env THINGLEDGER_DEPLOYMENT)",
    )
    group.add_argument(
        "--rpc",
        default=os.environ.get("THINGLEDGER_RPC", DEFAULT_RPC),
        metavar="URL",
        help=f"JSON-RPC endpoint (env THINGLEDGER_RPC, default {DEFAULT_RPC})",
    )
    group.add_argument(
        "--keystore",
        default=os.environ.get("THINGLEDGER_KEYSTORE"),
        metavar="PATH",
        help="the device's encrypted key file (env THINGLEDGER_KEYSTORE)",
    )
    group.add_argument(
        "--password-file",
        metavar="PATH",
        help="file holding the keystore password (else env THINGLEDGER_KEYSTORE_PASSWORD, else a prompt)",
    )
    group.add_argument(
        "--state-dir",
        default=os.environ.get("THINGLEDGER_STATE_DIR", DEFAULT_STATE_DIR),
        metavar="PATH",
        help=f"where issued challenges and the actuator log live (default {DEFAULT_STATE_DIR})",
    )
    group.add_argument("--json", action="store_true", help="print one JSON object (for machines)")
    return common


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="thingledger-device",
        description="thingledger device client: device key, provisioning signature, warehouse pickup, service market.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    common = [_common_options()]

    def command(name: str, handler: Handler, help_text: str) -> ArgumentParser:
        sub: ArgumentParser = commands.add_parser(name, parents=common, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    command("keygen", cmd_keygen, "create a new device key in an encrypted keystore (never overwrites)")
    command("address", cmd_address, "print the device's address")

    provisioning = command("sign-provisioning", cmd_sign_provisioning, "sign the manufacturer's provisioning message")
    provisioning.add_argument("--manufacturer", required=True, metavar="ADDR", help="the provisioning manufacturer")
    provisioning.add_argument("--record", required=True, metavar="FILE", help="manufacturing record JSON")
    provisioning.add_argument(
        "--deadline", type=non_negative_int, metavar="TS", help="signature deadline (default: now + 3600)"
    )

    command("status", cmd_status, "show the device's registry entry")

    challenge = command("challenge", cmd_challenge, "issue a single-use pickup challenge for a receipt")
    challenge.add_argument("--receipt", required=True, metavar="URI", help="the buyer's receipt URI")
    challenge.add_argument(
        "--ttl", type=positive_int, default=300, metavar="SECONDS",
        help="lifetime (default 300): the buyer answers and the release is mined within it",
    )

    for name, handler, help_text in (
        ("verify", cmd_verify, "check a buyer's signed challenge (no release, no actuation)"),
        ("pickup", cmd_pickup, "verify, release the order on chain, then drive the actuator"),
    ):
        sub = command(name, handler, help_text)
        sub.add_argument("--receipt", required=True, metavar="URI", help="the buyer's receipt URI")
        sub.add_argument("--response", required=True, metavar="FILE|-", help="the buyer's signed challenge")
        if name == "pickup":
            sub.add_argument("--gas-keystore", metavar="PATH", help="account paying gas (default: the device key)")
            sub.add_argument(
                "--gas-password-file",
                metavar="PATH",
                help=f"password of the gas keystore (else env {GAS_PASSWORD_ENV}, else a prompt)",
            )
            sub.add_argument("--actuator", choices=("log", "gpio"), default="log", help="default: log")
            sub.add_argument("--gpio-pin", type=non_negative_int, default=17, metavar="N", help="BCM pin (default 17)")
            sub.add_argument(
                "--gpio-pulse", type=float, default=2.0, metavar="SECONDS", help="how long the output stays on"
            )

    from .market_cli import add_market_commands

    add_market_commands(command)
    return parser

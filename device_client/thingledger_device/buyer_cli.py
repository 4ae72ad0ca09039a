"""thingledger-buyer: the buyer's side of a warehouse pickup.

thingledger-buyer receipt --deployment PATH --order N --buyer ADDR [--png FILE]
thingledger-buyer sign-challenge --keystore PATH [--password-file PATH] --challenge FILE|-
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from .arguments import ArgumentParser, positive_int, read_input, run
from .errors import DeviceClientError
from .output import Output


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser, argv)


def cmd_receipt(args: argparse.Namespace, out: Output) -> int:
    from .barcode import terminal_qr, write_png
    from .deployment import load_deployment
    from .receipt import make_receipt

    deployment = load_deployment(args.deployment)
    receipt = make_receipt(deployment.chain_id, deployment.sales_order.address, args.order, args.buyer)
    uri = receipt.uri()
    if args.png:
        write_png(uri, args.png)
    if out.json_mode:
        out.json({"receipt": uri, "png": args.png})
    else:
        out.line(uri)
        out.line(terminal_qr(uri))
        if args.png:
            out.note(f"QR code written to {args.png}")
    return 0


def cmd_sign_challenge(args: argparse.Namespace, out: Output) -> int:
    from .challenge import MAX_TTL_SECONDS, describe_time, parse_challenge, sign_challenge
    from .keystore import PASSWORD_ENV, read_keystore, resolve_password, unlock_keystore

    challenge = parse_challenge(read_input(args.challenge, "challenge"))
    now = int(time.time())
    if challenge.expires_at < now:
        raise DeviceClientError(
            f"the challenge expired at {describe_time(challenge.expires_at)}: ask the gate for a new one"
        )
    # The signature is also the buyer's consent to the release on chain, valid until expiresAt: a gate that
    # asks for a long-lived one could keep it and release later without handing the item over.
    if challenge.expires_at > now + MAX_TTL_SECONDS:
        raise DeviceClientError(
            f"the challenge is valid until {describe_time(challenge.expires_at)}, more than "
            f"{MAX_TTL_SECONDS // 60} minutes from now: refusing to sign a long-lived consent"
        )
    read_keystore(args.keystore)
    password = resolve_password(args.password_file, env_name=PASSWORD_ENV, purpose=f"buyer keystore {args.keystore}")
    response = sign_challenge(unlock_keystore(args.keystore, password), challenge)
    out.json(response.to_json())
    out.note(f"signed the challenge of order {challenge.order_id} at gate {challenge.gate_id}: show it to the gate")
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="thingledger-buyer", description="thingledger buyer: receipt QR code, pickup challenge."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    receipt = commands.add_parser("receipt", help="print the receipt URI and its QR code")
    receipt.set_defaults(handler=cmd_receipt)
    receipt.add_argument(
        "--deployment",
        default=os.environ.get("THINGLEDGER_DEPLOYMENT"),
        metavar="PATH",
        help="deployment JSON (env THINGLEDGER_DEPLOYMENT)",
    )
    receipt.add_argument("--order", required=True, type=positive_int, metavar="N", help="the order id")
    receipt.add_argument("--buyer", required=True, metavar="ADDR", help="the buyer's address")
    receipt.add_argument("--png", metavar="FILE", help="also write the QR code as a PNG image (needs pillow)")
    receipt.add_argument("--json", action="store_true", help="print one JSON object (for machines)")

    sign = commands.add_parser("sign-challenge", help="sign a gate's pickup challenge with the buyer's key")
    sign.set_defaults(handler=cmd_sign_challenge)
    sign.add_argument(
        "--keystore", default=os.environ.get("THINGLEDGER_KEYSTORE"), metavar="PATH", help="the buyer's key file"
    )
    sign.add_argument(
        "--password-file", metavar="PATH", help="file holding the password (else env THINGLEDGER_KEYSTORE_PASSWORD)"
    )
    sign.add_argument("--challenge", required=True, metavar="FILE|-", help="the challenge JSON the gate printed")
    sign.add_argument("--json", action="store_true", help="print one JSON object (for machines)")
    return parser


if __name__ == "__main__":
    import sys

    sys.exit(main())

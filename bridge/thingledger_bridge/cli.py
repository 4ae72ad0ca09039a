"""`thingledger-bridge`: the bridging node's command line.

  validator --config F [--once] [--json]     sign the messages this validator checked
  run       --config F [--once] [--json]     relay: scan, collect signatures, deliver exactly once
  messages  --config F [--state S] [--json]  every message the relayer knows
  status ID --config F [--json]              one message, with its status on the destination
  parked    --config F [--json]              parked messages and why
  retry ID  --config F [--gas-limit N] [--json]  re-queue a parked message / re-run a Failed one on chain

Exit codes: 0 ok, 1 runtime error (one line on stderr), 2 usage error. Never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from .errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, BridgeError, one_line
from .relayer_store import STATES


class UsageError(BridgeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_USAGE)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit 2) instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> Parser:
    parser = Parser(
        prog="thingledger-bridge",
        description="thingledger bridging node: validators sign CrossChainRelay messages they checked; "
        "a relayer delivers them exactly once.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    def command(name: str, help_text: str) -> Parser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", required=True, metavar="FILE", help="the node's TOML configuration")
        sub.add_argument("--json", action="store_true", help="JSON output for machines")
        return sub

    validator = command("validator", "check and sign messages (one process per validator key)")
    validator.add_argument("--once", action="store_true", help="process everything up to the safe heads, then exit")
    run = command("run", "relay messages: scan, collect signatures, deliver")
    run.add_argument("--once", action="store_true", help="one full pass (and its receipts), then exit")
    messages = command("messages", "every message the relayer knows")
    messages.add_argument("--state", choices=STATES, help="only messages in this state")
    status = command("status", "one message: relayer state and destination status")
    status.add_argument("id", metavar="ID", help="message id (0x + 64 hex)")
    command("parked", "parked messages with their reasons")
    retry = command("retry", "re-queue a parked message, or retry a Failed one on the destination")
    retry.add_argument("id", metavar="ID", help="message id (0x + 64 hex)")
    retry.add_argument(
        "--gas-limit",
        type=positive_int,
        metavar="N",
        help="gas for the recipient on an on-chain retry (default: the message's own)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .report import Output

    json_mode = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        output = Output(json_mode=args.json)
        return int(dispatch(args, output))
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0) if isinstance(exit_request.code, int) else EXIT_OK
    except BridgeError as error:
        return fail(error.message, error.exit_code, json_mode)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_FAILURE, json_mode)
    except BrokenPipeError:
        # stdout was closed by its reader (`... | head`): nothing left to say, and nobody to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as error:  # noqa: BLE001 - a bug still gets one line, never a traceback
        return fail(f"internal error: {type(error).__name__}: {one_line(error)}", EXIT_FAILURE, json_mode)


def fail(message: str, code: int, json_mode: bool) -> int:
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
    return code


def dispatch(args: argparse.Namespace, output: Any) -> int:
    from . import failpoints

    try:
        failpoints.configured()
    except ValueError as error:
        raise UsageError(str(error)) from None
    handlers = {
        "validator": cmd_validator,
        "run": cmd_run,
        "messages": cmd_messages,
        "status": cmd_status,
        "parked": cmd_parked,
        "retry": cmd_retry,
    }
    return handlers[args.command](args, output)


# ---------------------------------------------------------------------- shared steps


def _config(args: argparse.Namespace) -> Any:
    from .config import load_config

    return load_config(args.config)


def _clients(config: Any, *, check: bool = True, fail_fast: bool = False) -> dict[int, Any]:
    from .chain import ChainClient

    clients = {chain.chain_id: ChainClient(chain, fail_fast=fail_fast) for chain in config.chains}
    if check:
        for client in clients.values():
            client.check()
    return clients


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _message_id(text: str) -> str:
    from .messages import hex_id, parse_id

    try:
        return hex_id(parse_id(text))
    except ValueError as error:
        raise UsageError(str(error)) from None


def _relayer_store(config: Any) -> Any:
    from .relayer_store import RelayerStore

    settings = config.require_relayer()
    return RelayerStore(settings.database)


def _known(store: Any, message_id: str) -> Any:
    row = store.message(message_id)
    if row is None:
        raise BridgeError(f"unknown message {message_id}: the relayer has not seen it (run it first?)")
    return row


def _destination_status(config: Any, row: Any) -> str | None:
    from .chain import ChainClient, Rpc
    from .messages import parse_id
    from .relay_abi import STATUS_NAMES

    chain = config.chain(row.message.dst_chain_id)
    if chain is None:
        return None
    try:
        rpc = Rpc(chain.rpc_url, timeout=10.0, retries=1, label=f"chain {chain.name} ({chain.chain_id})")
        status = ChainClient(chain, rpc).message_statuses([parse_id(row.id)])[0]
    except BridgeError:
        return None
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else str(status)


# ---------------------------------------------------------------------- commands


def cmd_validator(args: argparse.Namespace, output: Any) -> int:
    from .keys import load_account
    from .validator import Validator
    from .validator_store import ValidatorStore

    config = _config(args)
    settings = config.require_validator()
    account = load_account(settings.key, "validator")
    clients = _clients(config)
    store = ValidatorStore(settings.database)
    stop = _stop_on_signals()
    output.event("started", role="validator", validator=account.address, chains=sorted(clients))
    try:
        signed = Validator(config, account, clients, store, output.event).run(once=args.once, stop=stop)
    finally:
        store.close()
    output.event("stopped", role="validator", signed=signed)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, output: Any) -> int:
    from .keys import load_account
    from .relayer import Relayer
    from .report import LiveView

    config = _config(args)
    settings = config.require_relayer()
    account = load_account(settings.key, "relayer")
    # The relayer backs off per chain itself: its clients fail fast, and each chain is checked by the first
    # pass that reaches it, so one chain down at the start does not keep the others' lanes from running.
    clients = _clients(config, check=False, fail_fast=True)
    store = _relayer_store(config)
    stop = _stop_on_signals()
    relayer = Relayer(config, account, clients, store, output.event, unchecked=clients)
    try:
        if not output.json_mode and output.console.is_terminal:
            with LiveView(output, store.counts()) as view:
                relayer.run(once=args.once, stop=stop, on_pass=lambda _: view.set_counts(store.counts()))
        else:
            output.event("started", role="relayer", relayer=account.address, chains=sorted(clients))
            relayer.run(once=args.once, stop=stop)
        output.event("stopped", role="relayer", counts=store.counts())
    finally:
        store.close()
    return EXIT_OK


def cmd_messages(args: argparse.Namespace, output: Any) -> int:
    from .report import messages_table

    store = _relayer_store(_config(args))
    try:
        rows = store.messages(args.state)
    finally:
        store.close()
    if output.json_mode:
        for row in rows:
            output.json(row.to_json())
    else:
        output.console.print(messages_table(rows, f"{len(rows)} message(s)" + (f" {args.state}" if args.state else "")))
    return EXIT_OK


def cmd_parked(args: argparse.Namespace, output: Any) -> int:
    from .report import messages_table

    store = _relayer_store(_config(args))
    try:
        rows = store.messages("parked")
    finally:
        store.close()
    if output.json_mode:
        for row in rows:
            output.json(row.to_json())
    elif not rows:
        output.console.print("no parked messages")
    else:
        output.console.print(messages_table(rows, f"{len(rows)} parked message(s)", reasons=True))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, output: Any) -> int:
    from .report import message_details

    message_id = _message_id(args.id)
    config = _config(args)
    store = _relayer_store(config)
    try:
        row = _known(store, message_id)
    finally:
        store.close()
    destination = _destination_status(config, row)
    if output.json_mode:
        output.json(row.to_json(destination))
    else:
        output.console.print(message_details(row, destination))
    return EXIT_OK


def cmd_retry(args: argparse.Namespace, output: Any) -> int:
    from .keys import load_account
    from .messages import parse_id
    from .relay_abi import relay_abi
    from .relayer import GAS_MARGIN_PERCENT, Relayer, estimate_deliveries

    message_id = _message_id(args.id)
    config = _config(args)
    settings = config.require_relayer()
    store = _relayer_store(config)
    try:
        row = _known(store, message_id)
        if row.state == "parked":
            store.unpark(message_id)
            result = store.message(message_id)
            if output.json_mode:
                output.json({"event": "requeued", **result.to_json()})
            else:
                output.console.print(f"message {message_id} is back in the queue (attempts reset)")
            return EXIT_OK
        clients = _clients(config)
        client = clients[row.message.dst_chain_id]
        status = client.message_statuses([parse_id(message_id)])[0]
        if status == 1:
            if row.state != "delivered":
                store.mark_delivered(message_id, "other")
            raise BridgeError(f"message {message_id} is already Delivered on the destination: nothing to retry")
        if status == 0:
            raise BridgeError(
                f"message {message_id} is {row.state} and not Failed on the destination: nothing to retry"
            )
        if row.state != "failed":
            store.mark_failed(message_id, "Failed on the destination (its recipient reverted)", "other")
        account = load_account(settings.key, "relayer")
        gas_limit = args.gas_limit or row.message.gas_limit
        data = relay_abi().encode("retry", row.message.as_tuple(), gas_limit)
        from .chain import RevertError

        (estimate,) = estimate_deliveries(client, account.address, [data])
        if isinstance(estimate, RevertError):
            raise BridgeError(f"retry of {message_id} reverts: {estimate.description}")
        relayer = Relayer(
            config,
            account,
            clients,
            store,
            output.event if output.json_mode else (lambda *a, **k: None),
            check_open_at_start=False,  # the retry is sent just now: look for its receipt, do not resend it
        )
        gas = estimate + estimate * GAS_MARGIN_PERCENT // 100
        row = _known(store, message_id)
        if not relayer.submit(row, client, data, gas, kind="retry"):
            raise BridgeError(f"the node refused the retry transaction of {message_id}")
        stop = threading.Event()
        relayer.wait_for_receipts(settings.receipt_timeout, stop, message_id)
        result = _known(store, message_id)
        if result.state != "delivered":
            submissions = store.submissions(message_id)
            if any(sub.open for sub in submissions):
                raise BridgeError(f"retry of {message_id} sent but not mined within {settings.receipt_timeout:.0f} s")
            if client.message_statuses([parse_id(message_id)])[0] == 1:
                # Delivered on chain all the same (by someone else's retry): say so, and record it.
                store.mark_delivered(message_id, "other")
                result = _known(store, message_id)
            elif submissions[-1].status == "reverted":
                raise BridgeError(f"retry of {message_id} reverted on chain; it stays failed")
            else:
                raise BridgeError(
                    f"retry of {message_id} was not mined ({submissions[-1].status}: {submissions[-1].error}); "
                    "it stays failed"
                )
        if output.json_mode:
            output.json({"event": "delivered", **result.to_json("Delivered")})
        else:
            by = f"tx {result.tx_hashes[-1]}" if result.delivered_by == "us" else "by another transaction"
            output.console.print(f"message {message_id} retried on chain {row.message.dst_chain_id}: delivered ({by})")
        return EXIT_OK
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())

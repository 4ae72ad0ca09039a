"""Steps the device CLI's commands share: the deployment file, the checked connection to the chain, and the
accounts (the device key, a gas payer, an account acting for itself) unlocked from their keystores.

Light to import: web3 and eth-account load only when a step needs them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from .chain import Chain
    from .deployment import Deployment

GAS_PASSWORD_ENV = "THINGLEDGER_GAS_KEYSTORE_PASSWORD"
FROM_PASSWORD_ENV = "THINGLEDGER_FROM_KEYSTORE_PASSWORD"


def deployment_of(args: argparse.Namespace) -> Deployment:
    """The deployment file named by --deployment (or THINGLEDGER_DEPLOYMENT)."""
    from .deployment import load_deployment

    return load_deployment(args.deployment)


def chain_of(args: argparse.Namespace) -> Chain:
    """The deployment's contracts on --rpc, after checking the node serves the deployment's chain."""
    deployment = deployment_of(args)
    from .chain import connect  # imports web3: only for commands that talk to the chain

    return connect(args.rpc, deployment)


def device_address(args: argparse.Namespace) -> str:
    """The device key's address, read from --keystore without decrypting it."""
    from .keystore import keystore_address

    return keystore_address(args.keystore)


def unlock(keystore: str | None, password_file: str | None, env_name: str, purpose: str) -> LocalAccount:
    """The account of `keystore`; a missing or malformed file fails before asking for a password."""
    from .keystore import read_keystore, resolve_password, unlock_keystore

    read_keystore(keystore)
    return unlock_keystore(keystore, resolve_password(password_file, env_name=env_name, purpose=purpose))


def device_account(args: argparse.Namespace) -> LocalAccount:
    """The device key (--keystore, --password-file)."""
    from .keystore import PASSWORD_ENV

    return unlock(args.keystore, args.password_file, PASSWORD_ENV, f"device keystore {args.keystore}")


def gas_payer(args: argparse.Namespace, device: LocalAccount) -> LocalAccount:
    """Who pays the gas of a transaction carrying the device's signature: --gas-keystore, else the device."""
    if not args.gas_keystore:
        return device
    return unlock(args.gas_keystore, args.gas_password_file, GAS_PASSWORD_ENV, f"gas keystore {args.gas_keystore}")


def acting_account(args: argparse.Namespace) -> LocalAccount:
    """The account that acts for itself (a demander, a credit holder): --from-keystore, else the device key."""
    if not args.from_keystore:
        return device_account(args)
    return unlock(
        args.from_keystore, args.from_password_file, FROM_PASSWORD_ENV, f"account keystore {args.from_keystore}"
    )


def acting_address(args: argparse.Namespace) -> str | None:
    """The address of --from-keystore, else of the device key, else None (neither given); not decrypted."""
    from .keystore import keystore_address

    if args.from_keystore:
        return keystore_address(args.from_keystore)
    if args.keystore:
        return keystore_address(args.keystore)
    return None

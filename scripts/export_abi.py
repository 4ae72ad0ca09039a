"""Write the ABI JSON of every thingledger contract to interfaces/abi/ (the device client loads them).

    ape run export_abi

tests/test_interfaces.py fails when these files drift from the compiled contracts.
"""

import json
from pathlib import Path

import click
from ape import project

EXPORTED_CONTRACTS = (
    "DeviceRegistry",
    "SalesOrder",
    "ServiceMarket",
    "CrossChainRelay",
    "DeviceMirror",
    "DeviceMirrorPublisher",
)
ABI_FOLDER = Path(__file__).resolve().parent.parent / "interfaces" / "abi"


def abi_json(contract_name: str) -> str:
    """The ABI of `contract_name` as the canonical JSON text stored in interfaces/abi/."""
    contract_type = project.get_contract(contract_name).contract_type
    abi = [entry.model_dump(mode="json", by_alias=True, exclude_none=True) for entry in contract_type.abi]
    return json.dumps(abi, indent=2, sort_keys=True) + "\n"


@click.command()
def cli() -> None:
    """Export the ABI of each contract to interfaces/abi/<Name>.json."""
    ABI_FOLDER.mkdir(parents=True, exist_ok=True)
    for name in EXPORTED_CONTRACTS:
        path = ABI_FOLDER / f"{name}.json"
        path.write_text(abi_json(name))
        click.echo(f"wrote {path.relative_to(ABI_FOLDER.parent.parent)}")

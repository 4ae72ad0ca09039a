"""interfaces/ stays in sync with contracts/: the ABI JSON the device client loads is the compiled ABI.

(The Solidity interfaces need no test: each contract inherits its interface, so the compiler
refuses a contract that drifts from it.)
"""

import importlib.util
import json
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"thingledger_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_abi = _load_script("export_abi")


@pytest.mark.parametrize("contract_name", export_abi.EXPORTED_CONTRACTS)
def test_abi_file_matches_compiled_contract(contract_name):
    stored = (ROOT / "interfaces" / "abi" / f"{contract_name}.json").read_text()
    assert stored == export_abi.abi_json(contract_name), (
        f"interfaces/abi/{contract_name}.json is stale: run `ape run export_abi`"
    )


@pytest.mark.parametrize("contract_name", export_abi.EXPORTED_CONTRACTS)
def test_device_client_ships_the_same_abi(contract_name):
    shipped = resources.files("thingledger_device").joinpath("abi", f"{contract_name}.json").read_text()
    assert shipped == (ROOT / "interfaces" / "abi" / f"{contract_name}.json").read_text()

"""Fixtures of the device client tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_helpers import DEPLOYER, PASSWORD, REGISTRY, SALES_ORDER, write_deployment


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password.txt"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def deployment_file(tmp_path: Path) -> Path:
    return write_deployment(
        tmp_path / "deployment.json", chain_id=31337, registry=REGISTRY, sales_order=SALES_ORDER, deployer=DEPLOYER
    )

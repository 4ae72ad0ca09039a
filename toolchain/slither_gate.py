"""Slither gate: every detector over contracts/, failing on any high or medium finding.

It also fails when it analysed none of our contracts, so a broken compile or a
wrong path can never pass as "no findings". Test-only contracts (contracts/mocks)
are left out. Run from the repository root: `python toolchain/slither_gate.py`.
"""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

from slither import Slither
from slither.detectors import all_detectors
from slither.detectors.abstract_detector import AbstractDetector, DetectorClassification

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_CONTRACTS = ROOT / "contracts"
EXCLUDED_FOLDERS = ("contracts/mocks",)
FAILING_IMPACTS = {DetectorClassification.HIGH, DetectorClassification.MEDIUM}


def is_product_source(path: str) -> bool:
    """True for a source file of ours under contracts/ that is not test-only."""
    resolved = Path(path).resolve()
    relative = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else ""
    return relative.startswith("contracts/") and not relative.startswith(EXCLUDED_FOLDERS)


def main() -> int:
    logging.disable(logging.WARNING)
    slither = Slither(
        str(ROOT),
        foundry_compile_all=False,
        filter_paths=["node_modules", "tests", "contracts/mocks"],
    )
    ours = sorted(
        {c.name for c in slither.contracts if is_product_source(c.source_mapping.filename.absolute)}
    )
    if not ours:
        print("slither gate: no contract from contracts/ was analysed", file=sys.stderr)
        return 1

    detectors = [
        d for d in vars(all_detectors).values() if inspect.isclass(d) and issubclass(d, AbstractDetector)
    ]
    for detector in detectors:
        slither.register_detector(detector)
    failing = []
    for detector_results in slither.run_detectors():
        for result in detector_results:
            elements = result.get("elements", [])
            in_ours = any(
                is_product_source(e.get("source_mapping", {}).get("filename_absolute", "")) for e in elements
            )
            if in_ours and result["impact"] in ("High", "Medium"):
                failing.append(result)

    print(f"slither gate: analysed {len(ours)} contracts of ours ({', '.join(ours)}) with {len(detectors)} detectors")
    for result in failing:
        print(f"  [{result['impact']}] {result['check']}: {result['description'].strip().splitlines()[0]}")
    if failing:
        print(f"slither gate: {len(failing)} high or medium finding(s)", file=sys.stderr)
        return 1
    print("slither gate: no high or medium finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())

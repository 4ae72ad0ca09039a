"""The signature store: atomic writes in the agreed layout, and reads that trust nothing in a file (a
signature is returned only when it recovers, with a low s, to the folder's validator for the digest the
reader computed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bridge_helpers import SECP256K1_N, fixed_key, malleate
from eth_utils import keccak
from thingledger_bridge import signature_store
from thingledger_bridge.signature_store import (
    SignatureRecord,
    read_signature,
    recover_signer,
    sign_digest,
    signature_path,
    write_signature,
)

VALIDATOR = fixed_key("store-validator")
OTHER = fixed_key("store-other")
DIGEST = keccak(text="a delivery digest")
MESSAGE_ID = "0x" + keccak(text="a message id").hex()


def record(signature: bytes, validator: str = VALIDATOR.address, digest: bytes = DIGEST) -> SignatureRecord:
    return SignatureRecord(
        id=MESSAGE_ID,
        validator=validator,
        signature=signature,
        digest=digest,
        dst_chain_id=1002,
        dst_relay="0x" + "12" * 20,
    )


def test_sign_and_recover_round_trip_with_low_s() -> None:
    signature = sign_digest(VALIDATOR, DIGEST)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
    assert recover_signer(DIGEST, signature) == VALIDATOR.address
    assert recover_signer(keccak(text="another digest"), signature) != VALIDATOR.address


def test_a_written_signature_is_in_the_agreed_layout_and_reads_back(tmp_path: Path) -> None:
    signature = sign_digest(VALIDATOR, DIGEST)
    path = write_signature(tmp_path, record(signature))
    assert path == tmp_path / VALIDATOR.address / f"{MESSAGE_ID}.json"
    assert path == signature_path(tmp_path, VALIDATOR.address.lower(), MESSAGE_ID.upper().replace("0X", "0x"))
    document = json.loads(path.read_text())
    assert document == {
        "id": MESSAGE_ID,
        "validator": VALIDATOR.address,
        "signature": "0x" + signature.hex(),
        "digest": "0x" + DIGEST.hex(),
        "dst_chain_id": 1002,
        "dst_relay": "0x" + "12" * 20,
    }
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    assert read_signature(tmp_path, VALIDATOR.address, MESSAGE_ID, DIGEST) == signature


def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(signature_store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_signature(tmp_path, record(sign_digest(VALIDATOR, DIGEST)))
    assert os.listdir(tmp_path / VALIDATOR.address) == []
    assert read_signature(tmp_path, VALIDATOR.address, MESSAGE_ID, DIGEST) is None


def test_rewriting_replaces_the_whole_file(tmp_path: Path) -> None:
    write_signature(tmp_path, record(sign_digest(VALIDATOR, keccak(text="old"))))
    fresh = sign_digest(VALIDATOR, DIGEST)
    write_signature(tmp_path, record(fresh))
    assert read_signature(tmp_path, VALIDATOR.address, MESSAGE_ID, DIGEST) == fresh


def tamper(tmp_path: Path, change) -> Path:
    path = write_signature(tmp_path, record(sign_digest(VALIDATOR, DIGEST)))
    document = json.loads(path.read_text())
    path.write_text(change(document))
    return path


@pytest.mark.parametrize(
    "change",
    [
        # another validator's signature put in this validator's folder
        lambda d: json.dumps({**d, "signature": "0x" + sign_digest(OTHER, DIGEST).hex(), "validator": OTHER.address}),
        # a signature of another digest (the file's own "digest" field changed to match it is not believed)
        lambda d: json.dumps(
            {
                **d,
                "signature": "0x" + sign_digest(VALIDATOR, keccak(text="x")).hex(),
                "digest": "0x" + keccak(text="x").hex(),
            }
        ),
        # the malleated (high-s) twin of a valid signature: the relay refuses it, so the reader does too
        lambda d: json.dumps({**d, "signature": "0x" + malleate(bytes.fromhex(d["signature"][2:])).hex()}),
        # a flipped bit
        lambda d: json.dumps(
            {
                **d,
                "signature": d["signature"][:-4]
                + ("00" if d["signature"][-4:-2] != "00" else "01")
                + d["signature"][-2:],
            }
        ),
        # wrong v, short signature, not hex, not a string, not JSON, not an object
        lambda d: json.dumps({**d, "signature": d["signature"][:-2] + "1d"}),
        lambda d: json.dumps({**d, "signature": d["signature"][:-2]}),
        lambda d: json.dumps({**d, "signature": "0x" + "zz" * 65}),
        lambda d: json.dumps({**d, "signature": 12}),
        lambda d: "{not json",
        lambda d: json.dumps([d]),
    ],
)
def test_tampered_files_are_refused(tmp_path: Path, change) -> None:
    tamper(tmp_path, change)
    assert read_signature(tmp_path, VALIDATOR.address, MESSAGE_ID, DIGEST) is None


def test_a_signature_is_only_good_for_the_digest_the_reader_computed(tmp_path: Path) -> None:
    write_signature(tmp_path, record(sign_digest(VALIDATOR, DIGEST)))
    assert read_signature(tmp_path, VALIDATOR.address, MESSAGE_ID, keccak(text="another message")) is None
    assert read_signature(tmp_path, OTHER.address, MESSAGE_ID, DIGEST) is None  # no such file


def test_a_batch_of_signatures_is_written_completely(tmp_path: Path) -> None:
    from thingledger_bridge.signature_store import write_signatures

    calls: list[int] = []
    records: list[SignatureRecord] = []
    for index in range(20):
        digest = keccak(text=f"digest {index}")
        records.append(
            SignatureRecord(
                id="0x" + keccak(text=f"id {index}").hex(),
                validator=VALIDATOR.address,
                signature=sign_digest(VALIDATOR, digest),
                digest=digest,
                dst_chain_id=1002,
                dst_relay="0x" + "12" * 20,
            )
        )
    folder = tmp_path / VALIDATOR.address

    def before_each() -> None:  # the n-th call finds the n-1 files before it in place
        assert len(os.listdir(folder)) == len(calls) if folder.exists() else not calls
        calls.append(1)

    paths = write_signatures(tmp_path, records, before_each=before_each)
    assert len(calls) == 20 and len(set(paths)) == 20
    assert sorted(os.listdir(tmp_path / VALIDATOR.address)) == sorted(f"{r.id}.json" for r in records)
    for record in records:
        assert read_signature(tmp_path, VALIDATOR.address, record.id, record.digest) == record.signature
    assert write_signatures(tmp_path, []) == []

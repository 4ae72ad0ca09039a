"""The receipt's QR code: as text for a terminal, or as a PNG image (needs pillow)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .errors import DeviceClientError


def _qr(text: str) -> Any:
    import qrcode  # type: ignore[import-untyped, unused-ignore]

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(text)
    code.make(fit=True)
    return code


def terminal_qr(text: str) -> str:
    """The QR code of `text` drawn with block characters, for a terminal."""
    buffer = io.StringIO()
    _qr(text).print_ascii(out=buffer, invert=True)
    return buffer.getvalue()


def write_png(text: str, path: str | Path) -> None:
    """Writes the QR code of `text` as a PNG image."""
    try:
        from qrcode.image.pil import PilImage  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise DeviceClientError("writing a PNG needs pillow: pip install 'thingledger-device[png]'") from None
    image = _qr(text).make_image(image_factory=PilImage)
    try:
        with Path(path).open("wb") as stream:
            image.save(stream)
    except OSError as error:
        raise DeviceClientError(f"cannot write {path}: {error.strerror or error}") from None

"""Which text encoding reads a page's bytes: what they say about themselves, checked against the bytes.

Servers mislabel pages (a Latin-1 page sent as UTF-8, UTF-8 sent as Latin-1, a charset nobody has heard
of), so a label is believed only when the bytes decode under it. Whatever is chosen, undecodable bytes
become U+FFFD rather than an error.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

__all__ = ["choose_encoding", "decode"]

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_GUESS_BYTES = 64 * 1024  # enough of a page to tell its encoding, without reading megabytes twice
_ENOUGH_TO_TELL = 200  # non-ASCII bytes


def choose_encoding(data: bytes, declared: str | None = None, html: bool = False) -> str:
    """A codec name that reads `data`: its byte-order mark; else UTF-8 when the bytes are valid UTF-8 (a
    page labelled Latin-1 but written in UTF-8 is common, the reverse never decodes); else the declared
    charset (the HTTP header) or the page's <meta> (HTML only) when the bytes decode under it; else a guess."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    if _decodes(data, "utf-8"):
        return "utf-8"
    meta = _META.search(data[:4096]) if html else None
    for name in (_codec(declared), _codec(meta.group(1).decode("ascii") if meta else None)):
        if name and _decodes(data, name):
            return name
    return _guess(data)


def _guess(data: bytes) -> str:
    """charset-normalizer's reading when there is enough non-ASCII text to tell; else Windows-1252, the
    web's usual encoding for unlabelled pages (a few accented words cannot tell Latin-1 from Latin-2)."""
    sample = data[:_GUESS_BYTES]
    if sum(byte > 0x7F for byte in sample) >= _ENOUGH_TO_TELL:
        guess = from_bytes(sample).best()
        if guess is not None and _codec(guess.encoding):
            return guess.encoding
    return "cp1252" if _decodes(data, "cp1252") else "latin-1"


def decode(data: bytes, declared: str | None = None, html: bool = False) -> str:
    """`data` as text (see choose_encoding); a leading byte-order mark is dropped."""
    return data.decode(choose_encoding(data, declared, html), errors="replace").lstrip("\ufeff")


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip("\"'"))
    except (LookupError, ValueError):
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None  # not rot13, base64 …


def _decodes(data: bytes, name: str) -> bool:
    try:
        data.decode(name)
    except (UnicodeDecodeError, LookupError):
        return False
    return True

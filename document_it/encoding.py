"""Which text encoding reads a page's bytes: what they say about themselves, checked against the bytes.

Servers mislabel pages (a Latin-1 page sent as UTF-8, UTF-8 sent as Latin-1, a charset nobody has heard
of), so a label is believed only when the bytes decode under it. Whatever is chosen, undecodable bytes
become U+FFFD rather than an error.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

__all__ = ["choose_encoding", "decode", "not_text"]

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_GUESS_BYTES = 1024 * 1024  # past a page's inline scripts to its text; charset-normalizer reads 1 MB in ~10 ms
# the encodings web pages use (the WHATWG Encoding Standard's, by Python's names): no other label is believed,
# so "charset=undefined" or "unicode_escape" cannot pick a codec that is not one
_WEB = frozenset(codecs.lookup(name).name for name in (
    "utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "cp866", "iso8859-2", "iso8859-3", "iso8859-4",
    "iso8859-5", "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-10", "iso8859-13", "iso8859-14", "iso8859-15",
    "iso8859-16", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp874", "cp1250", "cp1251", "cp1252", "cp1253",
    "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "gbk", "gb18030", "big5", "euc-jp", "iso2022-jp",
    "shift_jis", "euc-kr"))
_AS_CP1252 = frozenset(codecs.lookup(name).name for name in ("latin-1", "ascii"))  # what browsers read them as
_ENOUGH_TO_TELL = 200  # non-ASCII bytes
_ASCII = bytes(range(128))


def choose_encoding(data: bytes, declared: str | None = None, html: bool = False) -> str:
    """A codec name that reads `data`: its byte-order mark; else UTF-16 when NULs say so; else UTF-8 when the
    bytes are valid UTF-8 (a page labelled Latin-1 but written in UTF-8 is common, the reverse never
    decodes); else the declared charset (the HTTP header) or the page's <meta> (HTML only) when the bytes
    decode under it; else a guess. Only web encodings are ever chosen."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    labels = [_codec(declared), _codec(_meta(data) if html else None)]
    if b"\x00" in data[:4096]:  # NULs decode as UTF-8 too, but text with NULs in it is UTF-16 without its mark
        wide = next((name for name in labels if name and name.startswith("utf-16")), None) or _utf16_order(data)
        if wide:
            return wide
    if _decodes(data, "utf-8"):
        return "utf-8"
    for name in labels:
        if name and not name.startswith("utf-") and _decodes(data, name):  # a wide label without NULs is wrong
            return name
    return _guess(data)


def _guess(data: bytes) -> str:
    """charset-normalizer's reading when there is enough non-ASCII text to tell; else Windows-1252, the
    web's usual encoding for unlabelled pages (a few accented words cannot tell Latin-1 from Latin-2)."""
    sample = data[:_GUESS_BYTES]
    if len(sample.translate(None, _ASCII)) >= _ENOUGH_TO_TELL:  # what is left is the non-ASCII bytes
        guess = from_bytes(sample).best()
        found = _codec(guess.encoding) if guess is not None else None
        if found:
            return found
    return "cp1252"  # bytes it leaves undefined become U+FFFD


def decode(data: bytes, declared: str | None = None, html: bool = False) -> str:
    """`data` as text (see choose_encoding); a leading byte-order mark is dropped."""
    return data.decode(choose_encoding(data, declared, html), errors="replace").lstrip("\ufeff")


# the first bytes of formats that are never a page (images, archives, documents, executables, databases); only
# marks no text starts with: a binary format whose mark is a word (RIFF, OggS) fails the control-character test
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"%PDF-", b"PK\x03\x04", b"PK\x05\x06",
          b"\x1f\x8b", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c", b"\x28\xb5\x2f\xfd", b"Rar!\x1a\x07",
          b"\x7fELF", b"MZ\x90\x00", b"\xca\xfe\xba\xbe", b"\xcf\xfa\xed\xfe", b"\x00asm", b"SQLite format 3\x00",
          b"\x00\x00\x01\x00", b"\x00\x01\x00\x00\x00",
          b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"II*\x00", b"MM\x00*", b"\x1a\x45\xdf\xa3")
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # in no text; ESC and form feed can be
_SNIFF = 64 * 1024
_MULTIBYTE = ("shift_jis", "euc-jp", "gb18030", "big5", "euc-kr")  # what a short page with no label may be in


def not_text(data: bytes, declared: str | None = None) -> bool:
    """True when `data` is not a text document: a binary format's magic number; control characters in more
    than 2 % of its first 64 kB as read (NULs outside UTF-16/32 among them); or bytes that more than 2 % of
    it cannot read in any encoding tried (the chosen one, then the multibyte ones a short unlabelled page
    may be in)."""
    if data.startswith(_MAGIC):
        return True
    sample = data[:_SNIFF]
    if not sample:
        return False
    text = sample.decode(choose_encoding(sample, declared, html=True), errors="replace")
    if len(sample) == _SNIFF:
        text = text[:-1]  # a character cut at the sample's end is not the page's fault
    most = 0.02 * len(text)
    if len(_CONTROL.findall(text)) > most:
        return True
    if text.count("\ufffd") <= most:
        return False
    whole = sample if len(sample) < _SNIFF else sample[:-4]
    return not any(_decodes(whole, name) or _decodes(whole[:-1], name) for name in _MULTIBYTE)


def _codec(name: str | None) -> str | None:
    """The Python codec for a web encoding label, or None for a label that is not one."""
    if not name:
        return None
    try:
        found = codecs.lookup(name.strip().strip("\"'")).name
    except (LookupError, ValueError):
        return None
    found = "cp1252" if found in _AS_CP1252 else found
    return found if found in _WEB else None


def _meta(data: bytes) -> str | None:
    found = _META.search(data[:4096])
    return found.group(1).decode("ascii") if found else None


def _utf16_order(data: bytes) -> str | None:
    """UTF-16 LE or BE when most of the high bytes at one parity are NUL (ASCII-range text), else None."""
    sample = data[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2 or 1
    if odd > half * 0.3 and even < odd / 4:
        return "utf-16-le"
    if even > half * 0.3 and odd < even / 4:
        return "utf-16-be"
    return None


def _decodes(data: bytes, name: str) -> bool:
    try:
        data.decode(name)
    except (UnicodeError, LookupError, ValueError):
        return False
    return True

"""Which encoding reads a page: what its bytes bear out, never a label that is no web encoding."""

from __future__ import annotations

import pytest

from document_it.encoding import choose_encoding, decode


@pytest.mark.parametrize("data, declared, html, expected", [
    ("Café".encode("utf-8"), "iso-8859-1", False, "utf-8"),                 # UTF-8 sent as Latin-1
    (b"Caf\xe9 cr\xe8me", "utf-8", False, "cp1252"),                          # Latin-1 sent as UTF-8
    (b"Caf\xe9", "x-no-such-charset", False, "cp1252"),
    (b"Caf\xe9", "undefined", False, "cp1252"),                               # a JavaScript-made label
    (b"<meta charset=raw_unicode_escape><p>\\ud800 caf\xe9", None, True, "cp1252"),  # a codec, no web encoding
    (b"caf\xe9", "iso-8859-1", False, "cp1252"),                              # as browsers read that label
    ("<h1>Hi there</h1>".encode("utf-16-le"), "utf-16le", False, "utf-16-le"),  # no byte-order mark
    ("<h1>Hi there</h1>".encode("utf-16-be"), None, False, "utf-16-be"),
    ("<h1>Hi</h1>".encode("utf-16"), None, False, "utf-16"),                  # with its mark
    (b"<meta charset=shift_jis><h1>\x93\xfa\x96\x7b</h1>", None, True, "shift_jis"),
    (b"plain ascii", "utf-16", False, "utf-8"),                               # a wide label on narrow bytes
])
def test_the_encoding_chosen(data, declared, html, expected):
    assert choose_encoding(data, declared, html) == expected


def test_a_long_cyrillic_page_behind_a_big_script_is_guessed_right():
    page = ("<script>" + "x" * 100_000 + "</script>" + "Привет, это страница документации. " * 3000).encode("cp1251")
    assert choose_encoding(page, "utf-8", True) == "cp1251"
    assert "Привет" in decode(page, "utf-8", True)

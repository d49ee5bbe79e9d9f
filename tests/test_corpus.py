from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.corpus import CorpusError, Skipped, decode, document_from_bytes, html_to_text, paragraphs, walk

from .conftest import write


def texts(text: str) -> list[str]:
    return [text[p.start : p.end] for p in paragraphs(text)]


def test_paragraphs_are_blank_line_separated_and_numbered_from_one() -> None:
    text = "Title\n\nFirst line\nsame paragraph\n\n\n  \nSecond\n"
    paras = paragraphs(text)
    assert [p.number for p in paras] == [1, 2, 3]
    assert texts(text) == ["Title", "First line\nsame paragraph", "Second"]


def test_paragraphs_with_crlf_and_whitespace_only_lines() -> None:
    text = "Title\r\n\r\nOne\r\ntwo\r\n \t \r\nThree  \r\n"
    assert texts(text) == ["Title", "One\r\ntwo", "Three"]


def test_paragraph_offsets_index_the_text() -> None:
    text = "\n\n  Héllo wörld 你好  \n\nbye"
    for p in paragraphs(text):
        assert text[p.start : p.end].strip() == text[p.start : p.end]
    assert texts(text) == ["Héllo wörld 你好", "bye"]


def test_empty_text_has_no_paragraphs() -> None:
    assert paragraphs("") == [] and paragraphs(" \n\n\t\n") == []


@pytest.mark.parametrize(
    ("data", "expected", "encoding"),
    [
        (b"plain ascii", "plain ascii", "utf-8"),
        ("naïve café".encode(), "naïve café", "utf-8"),
        ("\ufeffbom text".encode(), "bom text", "utf-8"),
        ("utf16 text ü".encode("utf-16"), "utf16 text ü", "utf-16"),
    ],
)
def test_decode_known_encodings(data: bytes, expected: str, encoding: str) -> None:
    text, enc = decode(data)
    assert text == expected and enc == encoding


def test_decode_legacy_encoding_is_detected() -> None:
    data = ("Le cinéma français est très apprécié à l'étranger. " * 20).encode("latin-1")
    text, enc = decode(data)
    assert "cinéma" in text and enc != "utf-8"


def test_decode_rejects_binary() -> None:
    with pytest.raises(CorpusError, match="binary"):
        decode(b"\x7fELF\x00\x01\x02\x00\x00" * 50)


def test_document_title_and_hash() -> None:
    doc = document_from_bytes(b"\n  My Title \n\nBody.", "c/a.txt")
    assert doc.title == "My Title" and len(doc.sha256) == 64


def test_whitespace_only_document_is_refused() -> None:
    with pytest.raises(CorpusError, match="no text"):
        document_from_bytes(b" \n\n \t", "c/a.txt")


def test_html_becomes_paragraphs() -> None:
    text = html_to_text("<html><head><script>var x=1;</script></head><body><h1>Head</h1><p>One &amp; two</p><p>Three</p></body></html>")
    assert texts(text) == ["Head", "One & two", "Three"]
    assert "var x" not in text


def test_walk_skips_hidden_and_unknown_and_sorts(tmp_path: Path) -> None:
    write(tmp_path, "b.txt", "b")
    write(tmp_path, "a.md", "a")
    write(tmp_path, ".hidden.txt", "h")
    write(tmp_path, ".git/x.txt", "h")
    write(tmp_path, "image.png", b"\x89PNG")
    write(tmp_path, "sub dir/ünï.txt", "u")
    found = [item[1] for item in walk(tmp_path, (".txt", ".md")) if not isinstance(item, Skipped)]
    name = tmp_path.name
    assert found == [f"{name}/a.md", f"{name}/b.txt", f"{name}/sub dir/ünï.txt"]


def test_walk_survives_symlink_loops(tmp_path: Path) -> None:
    write(tmp_path, "sub/a.txt", "a")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    items = list(walk(tmp_path, (".txt",)))
    files = [i for i in items if not isinstance(i, Skipped)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(files) == 1
    assert any("loop" in s.reason for s in skipped)

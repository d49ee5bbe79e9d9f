"""Plain text: bytes to ``str`` by byte-order mark, strict UTF-8, then charset detection."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Extracted

_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


class CorpusError(ValueError):
    """A file that cannot be indexed; the message says why."""


def decode(data: bytes) -> tuple[str, str]:
    """Bytes to text. Byte-order marks first, then strict UTF-8, then charset detection.

    Raises CorpusError for binary data or text no decoder accepts.
    """
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc.removesuffix("-sig")
            except UnicodeDecodeError as exc:
                raise CorpusError(f"invalid {enc} after its byte-order mark: {exc.reason}") from None
    head = data[:8192]
    if b"\x00" in head:
        raise CorpusError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1024 * 1024]).best()
    if best is None or best.encoding is None:
        raise CorpusError("binary or undecodable file (no text encoding fits)")
    if not _is_multibyte(best.encoding):
        # Detection cannot tell single-byte Latin code pages apart on short texts (it guesses
        # cp1250 for French); Windows-1252 is by far the most common of them, so it wins.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(best.encoding), best.encoding
    except (UnicodeDecodeError, LookupError):
        return data.decode(best.encoding, errors="replace"), f"{best.encoding}+replace"


def _is_multibyte(encoding: str) -> bool:
    import codecs

    name = codecs.lookup(encoding).name
    return any(m in name for m in ("gb", "big5", "shift_jis", "euc", "cp932", "cp949", "cp950", "iso2022", "hz", "utf"))


def read(data: bytes) -> Extracted:
    from . import Extracted

    text, encoding = decode(data)
    return Extracted(text, encoding)

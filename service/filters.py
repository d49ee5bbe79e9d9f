"""Which documents a search may draw from: path (prefix or glob), file type, modified-time range.

A ``Filter`` is parsed once from what a user sent (REST ``filter``, MCP ``filter``, CLI flags) and
then asked, per document, whether it admits it (``admits(source, modified)``). The stores apply it
*inside* retrieval: dense and BM25 candidates are drawn only from the chunks of admitted documents,
so ``k`` results come back whenever ``k`` matching paragraphs exist. Both stores call the same
``admits``, so a filter means the same thing everywhere.

* ``path`` is matched against the document's path inside its corpus folder (``reports/q3.pdf`` for
  the id ``seeds/reports/q3.pdf``); the full id is accepted too. Without wildcards it is a prefix of
  whole segments (``reports`` and ``reports/`` both mean that folder, or a file so named); with
  ``*``, ``?`` or ``[...]`` it is a glob (``*`` within a segment, ``**`` across segments, ``{a,b}``
  alternatives), matched by ``wcmatch``.
* ``types`` are extensions without the dot, case-insensitive; ``md`` also means ``markdown``, ``htm``
  ``html``, ``txt`` ``text``.
* ``modified_after`` is inclusive, ``modified_before`` exclusive, both in seconds since the epoch
  (parsed from ISO 8601: a date means midnight UTC, a time without an offset is UTC). A document whose
  modified time is unknown (an index written before it was recorded) is not admitted by a time range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FIELDS", "Filter", "FilterError", "FilterModel", "parse_time"]

FIELDS = ("path", "type", "modified_after", "modified_before")
MAX_PATH_CHARS = 1000
MAX_TYPES = 32
GLOB_PATTERNS = 1000  # patterns a glob's braces may expand to (wcmatch's own default limit)
_WILDCARDS = re.compile(r"[*?\[{]")
_TYPE = re.compile(r"^[a-z0-9]{1,16}$")
_SAME_TYPE = {"markdown": "md", "htm": "html", "text": "txt"}


class FilterError(ValueError):
    """A filter value that cannot be used; ``field`` names it (``filter.modified_after``)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"filter.{field_name}: {message}")
        self.field = field_name


def _canonical_type(value: str) -> str:
    return _SAME_TYPE.get(value, value)


def parse_time(value: Any, field_name: str) -> float:
    """ISO 8601 date or datetime → seconds since the epoch (UTC when no offset is given)."""
    if not isinstance(value, str) or not value.strip():
        raise FilterError(field_name, "give an ISO 8601 date or time, like 2024-05-01 or 2024-05-01T12:00:00Z")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(field_name, f"{value[:60]!r} is not an ISO 8601 date or time "
                                      "(like 2024-05-01 or 2024-05-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError, OSError):
        raise FilterError(field_name, f"{value[:60]!r} is out of range") from None


@dataclass(frozen=True)
class Filter:
    path: str | None = None
    types: tuple[str, ...] = ()
    modified_after: float | None = None
    modified_before: float | None = None
    _key: tuple[Any, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", (self.path, self.types, self.modified_after, self.modified_before))

    # -- parsing -------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, value: Mapping[str, Any] | Filter | None, known_types: Iterable[str] | None = None) -> Filter:
        """A filter from what a user sent (a mapping of ``FIELDS``; None or {} admits everything).

        ``known_types``: the extensions the index takes (``ASK_EXTENSIONS``); a type outside them
        is refused, since it could never match.
        """
        if value is None:
            return cls()
        if isinstance(value, Filter):
            return value
        if not isinstance(value, Mapping):
            raise FilterError("", "a filter is an object with path, type, modified_after, modified_before")
        unknown = sorted(str(k) for k in value if k not in FIELDS)
        if unknown:
            raise FilterError(unknown[0], f"unknown filter field; use {', '.join(FIELDS)}")
        path = cls._parse_path(value.get("path"))
        types = cls._parse_types(value.get("type"), known_types)
        after = parse_time(value["modified_after"], "modified_after") if value.get("modified_after") is not None else None
        before = (parse_time(value["modified_before"], "modified_before")
                  if value.get("modified_before") is not None else None)
        if after is not None and before is not None and before <= after:
            raise FilterError("modified_before", "must be later than modified_after")
        return cls(path, types, after, before)

    @staticmethod
    def _parse_path(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise FilterError("path", "a path prefix or glob, like 'reports/' or 'reports/**/*.pdf'")
        text = value.strip()
        if not text:
            return None
        if len(text) > MAX_PATH_CHARS or "\x00" in text or "\\" in text:
            raise FilterError("path", f"at most {MAX_PATH_CHARS} characters, no NUL or backslash")
        if text.startswith("/") or any(part in ("..", ".") for part in text.split("/")):
            raise FilterError("path", "a path inside the corpus: no leading '/', '.' or '..' segments")
        if _WILDCARDS.search(text):
            from wcmatch import glob
            from wcmatch._wcparse import PatternLimitException

            try:
                glob.compile(text, flags=_glob_flags(), limit=GLOB_PATTERNS)
            except (ValueError, RecursionError, PatternLimitException) as exc:  # e.g. braces expanding too far
                raise FilterError("path", f"not a usable glob: {exc}") from None
        return text

    @staticmethod
    def _parse_types(value: Any, known_types: Iterable[str] | None) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or len(items) > MAX_TYPES or not all(isinstance(t, str) for t in items):
            raise FilterError("type", f"a list of up to {MAX_TYPES} file types, like [\"pdf\", \"md\"]")
        types: list[str] = []
        for item in items:
            t = item.strip().lower().removeprefix(".")
            if not _TYPE.match(t):
                raise FilterError("type", f"{item[:40]!r} is not a file type (letters and digits, like 'pdf')")
            types.append(_canonical_type(t))
        if known_types is not None:
            known = {_canonical_type(k.lower().removeprefix(".")) for k in known_types}
            strangers = [t for t in types if t not in known]
            if strangers:
                raise FilterError("type", f"{strangers[0]!r} is not an indexed file type; indexed: "
                                          f"{', '.join(sorted(known))}")
        return tuple(sorted(set(types)))

    # -- meaning -------------------------------------------------------------------------------------
    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for filters that admit the same documents (stores cache their selections by it)."""
        return self._key

    @property
    def empty(self) -> bool:
        """Admits every document."""
        return self._key == (None, (), None, None)

    @property
    def by_time(self) -> bool:
        return self.modified_after is not None or self.modified_before is not None

    @cached_property
    def _glob(self) -> Any:
        if self.path is None or not _WILDCARDS.search(self.path):
            return None
        from wcmatch import glob

        return glob.compile(self.path, flags=_glob_flags(), limit=GLOB_PATTERNS)

    def _path_admits(self, source: str) -> bool:
        if self.path is None:
            return True
        inner = source.split("/", 1)[1] if "/" in source else source
        matcher = self._glob
        if matcher is not None:
            return bool(matcher.match(inner) or matcher.match(source))
        prefix = self.path.rstrip("/")
        return any(p == prefix or p.startswith(prefix + "/") for p in (inner, source))

    def admits(self, source: str, modified: float | None) -> bool:
        """Whether the document ``source`` (its id), last modified at ``modified``, may be searched."""
        if self.types:
            suffix = source.rsplit("/", 1)[-1]
            ext = suffix.rsplit(".", 1)[-1].lower() if "." in suffix else ""
            if _canonical_type(ext) not in self.types:
                return False
        if self.by_time:
            if modified is None or math.isnan(modified):
                return False
            if self.modified_after is not None and modified < self.modified_after:
                return False
            if self.modified_before is not None and modified >= self.modified_before:
                return False
        return self._path_admits(source)

    def as_dict(self) -> dict[str, Any]:
        """The filter as the API shows it (times as ISO 8601 UTC)."""
        def iso(t: float | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

        return {"path": self.path, "type": list(self.types) or None, "modified_after": iso(self.modified_after),
                "modified_before": iso(self.modified_before)}


# -- the wire shape (REST bodies and MCP arguments) ---------------------------------------------------------
class FilterModel(BaseModel):
    """Which documents a request draws from (every key optional; the engine checks the values and
    answers 422 naming the field). Applied inside retrieval: `k` passages come back when `k` match."""

    path: str | None = Field(None, description=(
        "Path inside the corpus folder: a prefix of whole segments (`reports/`) or a glob (`reports/**/*.pdf`, "
        "`*.{md,txt}`); the full document id (`seeds/reports/`) works too."), examples=["reports/"])
    type: list[str] | str | None = Field(None, description="File types without the dot (`[\"pdf\", \"md\"]`).",
                                         examples=[["md", "txt"]])
    modified_after: str | None = Field(None, description=(
        "ISO 8601 date or time (UTC when no offset): only documents modified at or after it."),
        examples=["2024-05-01"])
    modified_before: str | None = Field(None, description="ISO 8601 date or time: only documents modified before it.",
                                        examples=["2024-06-01T00:00:00Z"])

    model_config = ConfigDict(extra="forbid")

    def spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _glob_flags() -> int:
    """wcmatch's flags: ``**`` across segments, ``{a,b}`` alternatives (imported on first use: a cold
    ``ask`` without a glob never loads it)."""
    from wcmatch import glob

    return int(glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB)

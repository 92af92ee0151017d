"""The one query model: C-FIND identifiers and QIDO-RS parameters both become a `Query`.

Each matching key carries its kind of match (PS3.4 C.2.2.2); `db/query_sql.py` alone turns a
`Query` into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import InformationModel, QueryLevel


@dataclass(frozen=True, slots=True)
class SingleValue:
    """Exact match (C.2.2.2.1); for PN compared case-insensitively."""

    value: str


@dataclass(frozen=True, slots=True)
class Wildcard:
    """`*` matches any run of characters, `?` any single character (C.2.2.2.4)."""

    pattern: str


@dataclass(frozen=True, slots=True)
class DateTimeRange:
    """Inclusive range of DA, TM or DT values (C.2.2.2.5); an open end is None."""

    start: str | None
    end: str | None


@dataclass(frozen=True, slots=True)
class UidList:
    """Any of several UIDs (C.2.2.2.2)."""

    uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ValueList:
    """Any of several values of a multi-valued key such as ModalitiesInStudy `CT\\MR`."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Universal:
    """Zero-length value: every entity matches, the key is returned (C.2.2.2.3)."""


@dataclass(frozen=True, slots=True)
class SequenceMatch:
    """Matching on the items of a sequence attribute (C.2.2.2.6)."""

    items: tuple[KeyMatch, ...]


Match = SingleValue | Wildcard | DateTimeRange | UidList | ValueList | Universal | SequenceMatch


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """One key of a query: the attribute (by DICOM keyword) and how it must match."""

    keyword: str
    match: Match


@dataclass(frozen=True, slots=True)
class Query:
    """A search at one level of one information model.

    `key_matches` constrain the result; `return_keys` are the attributes asked for (every key of
    the identifier is also returned). `limit`/`offset` page the result.
    """

    information_model: InformationModel
    level: QueryLevel
    key_matches: tuple[KeyMatch, ...] = ()
    return_keys: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    is_fuzzy: bool = False
    # QIDO-RS `includefield=all`: every attribute the index holds at or above the level.
    includes_all: bool = False
    _constraint_keywords: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keywords = frozenset(
            km.keyword for km in self.key_matches if not isinstance(km.match, Universal)
        )
        object.__setattr__(self, "_constraint_keywords", keywords)

    @property
    def constraints(self) -> tuple[KeyMatch, ...]:
        """The key matches that actually narrow the result (universal ones do not)."""
        return tuple(km for km in self.key_matches if not isinstance(km.match, Universal))

    def constrains(self, keyword: str) -> bool:
        return keyword in self._constraint_keywords

    @property
    def requested_keywords(self) -> tuple[str, ...]:
        """Every attribute to return, in order, without repeats."""
        seen: dict[str, None] = {}
        for km in self.key_matches:
            seen.setdefault(km.keyword, None)
        for keyword in self.return_keys:
            seen.setdefault(keyword, None)
        return tuple(seen)


def match_from_text(keyword: str, vr: str, text: str) -> Match:
    """The kind of match one value of a matching key asks for (PS3.4 C.2.2.2), given its VR.

    C-FIND identifiers and QIDO-RS parameters both come through here.

    >>> match_from_text("PatientName", "PN", "DOE*"), match_from_text("StudyDate", "DA", "2024-")
    (Wildcard(pattern='DOE*'), DateTimeRange(start='2024', end=None))
    """
    if text == "" or text == "*":
        return Universal()
    if vr in ("DA", "TM", "DT") and "-" in text:
        start, _, end = text.partition("-")
        if text.count("-") > 1:
            raise InvalidQueryError(f"{keyword}: {text!r} is not a valid range")
        return DateTimeRange(start.strip() or None, end.strip() or None)
    if vr == "UI":
        return SingleValue(text)
    if vr in ("DA", "TM", "DT", "IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "AS"):
        if "*" in text or "?" in text:
            raise InvalidQueryError(f"{keyword} ({vr}) cannot use wildcards")
        return SingleValue(text)
    if "*" in text or "?" in text:
        return Wildcard(text)
    return SingleValue(text)

"""C-FIND/C-MOVE/C-GET identifiers <-> the query model and back."""

from __future__ import annotations

from collections.abc import Mapping

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import LEVELS_BY_MODEL, InformationModel, QueryLevel
from pedipacs.model.query import (
    KeyMatch,
    Match,
    Query,
    SequenceMatch,
    UidList,
    Universal,
    ValueList,
    match_from_text,
)

# Attributes of the identifier that describe the query rather than match anything.
_CONTROL_KEYWORDS = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"}


def query_from_identifier(identifier: Dataset, model: InformationModel) -> Query:
    """Parse a C-FIND identifier into a `Query`, refusing invalid levels and keys."""
    level = _level(identifier, model)
    key_matches: list[KeyMatch] = []
    for element in identifier:
        keyword = keyword_for_tag(element.tag)
        if not keyword or keyword in _CONTROL_KEYWORDS or element.tag.group == 0x0002:
            continue
        key_matches.append(KeyMatch(keyword, _match(keyword, element.VR, element.value)))
    return Query(information_model=model, level=level, key_matches=tuple(key_matches))


def retrieve_query_from_identifier(identifier: Dataset, model: InformationModel) -> Query:
    """A C-MOVE/C-GET identifier: the level and the unique keys naming what to send."""
    query = query_from_identifier(identifier, model)
    if not query.constraints:
        raise InvalidQueryError("the identifier names no entity to retrieve")
    return query


def _level(identifier: Dataset, model: InformationModel) -> QueryLevel:
    raw = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    try:
        level = QueryLevel(raw)
    except ValueError as error:
        raise InvalidQueryError(f"QueryRetrieveLevel {raw!r} is not valid") from error
    if level not in LEVELS_BY_MODEL[model]:
        raise InvalidQueryError(f"QueryRetrieveLevel {level} is not part of the {model} model")
    return level


def _match(keyword: str, vr: str, value: object) -> Match:
    if vr == "SQ":
        items = list(value or [])  # type: ignore[call-overload]
        if not items:
            return Universal()
        inner = tuple(
            KeyMatch(keyword_for_tag(e.tag), _match(keyword_for_tag(e.tag), e.VR, e.value))
            for e in items[0]
            if keyword_for_tag(e.tag)
        )
        return SequenceMatch(inner)
    if isinstance(value, MultiValue | list | tuple):
        values = tuple(str(v).strip() for v in value if str(v).strip())
        if not values:
            return Universal()
        if len(values) == 1:
            return match_from_text(keyword, vr, values[0])
        return UidList(values) if vr == "UI" else ValueList(values)
    text = "" if value is None else str(value).strip().rstrip("\x00")
    return match_from_text(keyword, vr, text)


def dataset_from_match(
    values: Mapping[str, str | list[str] | None],
    level: QueryLevel,
    *,
    retrieve_ae_title: str,
) -> Dataset:
    """The C-FIND response identifier: every requested key, empty when unknown."""
    response = Dataset()
    is_ascii = True
    for keyword, value in values.items():
        vr = _vr(keyword)
        if vr is None:
            continue
        if vr == "SQ":
            setattr(response, keyword, [])
            continue
        if vr in _BINARY_NUMBER_VRS:
            # US, UL, FL, ... are encoded as binary numbers: pydicom cannot write a string.
            setattr(response, keyword, _binary_number(vr, value))
        elif isinstance(value, list):
            is_ascii = is_ascii and all(v.isascii() for v in value)
            setattr(response, keyword, value)
        else:
            is_ascii = is_ascii and (value is None or value.isascii())
            setattr(response, keyword, value if value is not None else "")
    response.QueryRetrieveLevel = str(level)
    response.RetrieveAETitle = retrieve_ae_title
    if not is_ascii:
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


_BINARY_NUMBER_VRS = {"US", "UL", "UV", "SS", "SL", "SV", "FL", "FD"}


def _binary_number(vr: str, value: str | list[str] | None) -> int | float | None:
    """The first value as a number for a binary numeric VR; None (zero length) if empty.

    >>> _binary_number("US", "512"), _binary_number("FD", "0.5"), _binary_number("US", None)
    (512, 0.5, None)
    """
    text = (value[0] if value else "") if isinstance(value, list) else (value or "")
    if not text.strip():
        return None
    try:
        return float(text) if vr in ("FL", "FD") else int(float(text))
    except ValueError:
        return None


def _vr(keyword: str) -> str | None:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    return str(dictionary_VR(tag))

"""C-FIND/C-MOVE/C-GET identifiers <-> the query model and back."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
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
from pedipacs.model.records import AttributeValues, QueryMatch

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
    if model is InformationModel.MODALITY_WORKLIST:
        # A worklist identifier has no level (PS3.4 K.6); every answer is a scheduled step.
        return QueryLevel.SCHEDULED_PROCEDURE_STEP
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
    match: QueryMatch, level: QueryLevel, *, retrieve_ae_title: str | None
) -> Dataset:
    """The C-FIND response identifier: every requested key, empty when unknown. A worklist
    answer has neither a level nor a Retrieve AE Title (`retrieve_ae_title` None)."""
    response, is_ascii = _identifier(match.values, match.items)
    if level is not QueryLevel.SCHEDULED_PROCEDURE_STEP:
        response.QueryRetrieveLevel = str(level)
    if retrieve_ae_title is not None:
        response.RetrieveAETitle = retrieve_ae_title
    if not is_ascii:
        response.SpecificCharacterSet = "ISO_IR 192"
    return response


def _identifier(
    values: AttributeValues, items: Mapping[str, tuple[AttributeValues, ...]]
) -> tuple[Dataset, bool]:
    """The attributes, the sequences' items nested; and whether every value is ASCII."""
    response = Dataset()
    is_ascii = True
    for keyword, value in values.items():
        tag_vr = _tag_and_vr(keyword)
        if tag_vr is None:
            continue
        tag, vr = tag_vr
        if vr == "SQ":
            sequence = []
            for item_values in items.get(keyword, ()):
                item, is_item_ascii = _identifier(item_values, {})
                sequence.append(item)
                is_ascii = is_ascii and is_item_ascii
            response.add_new(tag, vr, sequence)
        elif vr in _BINARY_NUMBER_VRS:
            # US, UL, FL, ... are encoded as binary numbers: pydicom cannot write a string.
            response.add_new(tag, vr, _binary_number(vr, value))
        elif isinstance(value, list):
            is_ascii = is_ascii and all(v.isascii() for v in value)
            response.add_new(tag, vr, value)
        else:
            is_ascii = is_ascii and (value is None or value.isascii())
            response.add_new(tag, vr, value if value is not None else "")
    return response, is_ascii


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


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[int, str] | None:
    """The tag and dictionary VR of a keyword (cached: every response looks them up)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    return tag, str(dictionary_VR(tag))

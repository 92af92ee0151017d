"""The ONE compiler from `model.Query` to SQL: PS3.4 C.2.2.2 matching, written once.

C-FIND (every level of Patient Root and Study Root) and QIDO-RS both run through here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import date, time
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, and_, exists, false, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from pedipacs.db.catalog import ATTRIBUTES, LEVEL_TABLES, Attribute, ValueKind
from pedipacs.db.tables import Instance, InstanceMetadata, Patient, Series, Study
from pedipacs.errors import InvalidQueryError
from pedipacs.model.levels import QueryLevel
from pedipacs.model.query import (
    DateTimeRange,
    KeyMatch,
    Match,
    Query,
    SequenceMatch,
    SingleValue,
    UidList,
    Universal,
    ValueList,
    Wildcard,
)
from pedipacs.model.values import (
    da_from_date,
    pn_search_form,
    range_bound_date,
    range_bound_time,
    tm_from_time,
)

LIKE_ESCAPE = "\\"
# Long UID lists are split so no database meets its bound-parameter limit.
UID_CHUNK = 500


def compile_query(query: Query, patient_scope: Collection[str] | None = None) -> Select[Any]:
    """A SELECT returning, for each matching entity, every column at or above its level.

    `patient_scope`, when given, keeps only the patients with those IDs (who may see what is
    decided in `security/access.py`; this only applies it).
    """
    columns = [a.column.label(a.keyword) for a in _attributes_at_or_above(query.level)]
    statement = select(*columns).select_from(_joined(query.level))
    if patient_scope is not None:
        statement = statement.where(_any_of_patients(patient_scope))
    for key_match in query.constraints:
        statement = statement.where(_condition(key_match, query.level, query.is_fuzzy))
    statement = statement.order_by(LEVEL_TABLES[query.level].id)
    if query.offset:
        statement = statement.offset(query.offset)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return statement


def _any_of_patients(patient_ids: Collection[str]) -> ColumnElement[bool]:
    if not patient_ids:
        return false()
    ids = sorted(patient_ids)
    chunks = [ids[i : i + UID_CHUNK] for i in range(0, len(ids), UID_CHUNK)]
    return or_(*(Patient.patient_id.in_(chunk) for chunk in chunks))


def returned_keywords(query: Query) -> tuple[str, ...]:
    """The attributes each match carries: the requested ones, or with `includes_all` also every
    attribute the index holds at or above the query's level."""
    if not query.includes_all:
        return query.requested_keywords
    held = (a.keyword for a in _attributes_at_or_above(query.level))
    return tuple(dict.fromkeys((*query.requested_keywords, *held)))


def values_from_row(row: Any, keywords: Sequence[str]) -> dict[str, str | list[str] | None]:
    """DICOM string values of the requested keywords; unknown keywords come back empty."""
    mapping = row._mapping
    values: dict[str, str | list[str] | None] = {}
    for keyword in keywords:
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None or keyword not in mapping:
            values[keyword] = None
            continue
        values[keyword] = _dicom_value(attribute, mapping[keyword])
    return values


def _attributes_at_or_above(level: QueryLevel) -> list[Attribute]:
    return [a for a in ATTRIBUTES.values() if a.level.depth <= level.depth]


def _joined(level: QueryLevel) -> Any:
    joined: Any = Patient.__table__
    if level.depth >= QueryLevel.STUDY.depth:
        joined = joined.join(Study, Study.patient_fk == Patient.id)
    if level.depth >= QueryLevel.SERIES.depth:
        joined = joined.join(Series, Series.study_fk == Study.id)
    if level.depth >= QueryLevel.IMAGE.depth:
        joined = joined.join(Instance, Instance.series_fk == Series.id)
    return joined


def _condition(
    key_match: KeyMatch, level: QueryLevel, is_fuzzy: bool = False
) -> ColumnElement[bool]:
    attribute = ATTRIBUTES.get(key_match.keyword)
    if attribute is None or isinstance(key_match.match, SequenceMatch):
        # PS3.4 C.2.2.1: an SCP that does not support matching on a key ignores it (and
        # returns it empty); an unknown key never narrows the answer.
        return and_(True)
    if attribute.level.depth > level.depth:
        raise InvalidQueryError(
            f"{key_match.keyword} is an {attribute.level} level key; it cannot constrain a "
            f"{level} level query"
        )
    if attribute.kind is ValueKind.MULTI_VALUED:
        return _multi_valued_condition(attribute, key_match)
    condition = _match_condition(attribute, key_match)
    if is_fuzzy and attribute.kind is ValueKind.PERSON_NAME:
        fuzzy = _fuzzy_person_name(attribute, key_match.match)
        if fuzzy is not None:
            # Fuzzy matching only widens: what matches exactly still matches.
            return or_(condition, fuzzy)
    return condition


def _match_condition(attribute: Attribute, key_match: KeyMatch) -> ColumnElement[bool]:
    match = key_match.match
    if isinstance(match, SingleValue):
        return _single_value(attribute, match.value)
    if isinstance(match, Wildcard):
        return _wildcard(attribute, match.pattern)
    if isinstance(match, DateTimeRange):
        return _range(attribute, match)
    if isinstance(match, UidList | ValueList):
        values = match.uids if isinstance(match, UidList) else match.values
        return _any_of(attribute, values)
    if isinstance(match, Universal):
        return and_(True)
    raise InvalidQueryError(f"unsupported match {match!r} for {key_match.keyword}")


def _single_value(attribute: Attribute, value: str) -> ColumnElement[bool]:
    if attribute.kind is ValueKind.PERSON_NAME:
        return attribute.search_column == pn_search_form(value)  # type: ignore[no-any-return]
    if attribute.kind is ValueKind.DATE:
        return attribute.column == range_bound_date(value, attribute.keyword)  # type: ignore[no-any-return]
    if attribute.kind is ValueKind.TIME:
        return _range(attribute, DateTimeRange(value, value))
    if attribute.kind is ValueKind.INTEGER:
        return attribute.column == _integer(value, attribute.keyword)  # type: ignore[no-any-return]
    return attribute.column == value  # type: ignore[no-any-return]


def _wildcard(attribute: Attribute, pattern: str) -> ColumnElement[bool]:
    if attribute.kind in (ValueKind.DATE, ValueKind.TIME, ValueKind.INTEGER, ValueKind.UID):
        raise InvalidQueryError(f"{attribute.keyword} ({attribute.vr}) cannot use wildcards")
    column = attribute.column
    if attribute.kind is ValueKind.PERSON_NAME:
        column = attribute.search_column
        pattern = pattern.split("=", 1)[0].upper()
    condition: ColumnElement[bool] = _CaseSensitiveLike(column, pattern)
    prefix = _literal_prefix(pattern)
    if prefix:
        # A prefix range lets every database use the B-tree index whatever its LIKE rules.
        condition = and_(column >= prefix, column < prefix + "\U0010ffff", condition)
    return condition


def _fuzzy_person_name(attribute: Attribute, match: Match) -> ColumnElement[bool] | None:
    """QIDO-RS `fuzzymatching=true` on a PN: every word of the value starts some name component
    or word, in any order, ignoring case and wildcards (`smi jo` finds `SMITH^JOHN` and
    `JONES^SMITHY`). Our documented fuzzy rule (PS3.18 leaves it to the implementation).
    None for the kinds of match it does not change (ranges, lists, universal)."""
    if isinstance(match, SingleValue):
        value = match.value
    elif isinstance(match, Wildcard):
        value = match.pattern
    else:
        return None
    alphabetic = value.split("=", 1)[0].upper().replace("*", " ").replace("?", "")
    words = [word for word in re.split(r"[\^\s]+", alphabetic) if word]
    if not words:
        return and_(True)
    column = attribute.search_column
    conditions = [
        or_(*(_CaseSensitiveLike(column, form) for form in (f"{w}*", f"*^{w}*", f"* {w}*")))
        for w in words
    ]
    return and_(*conditions)


def _range(attribute: Attribute, match: DateTimeRange) -> ColumnElement[bool]:
    if attribute.kind not in (ValueKind.DATE, ValueKind.TIME):
        raise InvalidQueryError(f"{attribute.keyword} ({attribute.vr}) cannot use range matching")
    if match.start is None and match.end is None:
        raise InvalidQueryError(f"{attribute.keyword}: a range needs at least one end")
    bounds: list[ColumnElement[bool]] = []
    if attribute.kind is ValueKind.DATE:
        if match.start:
            bounds.append(attribute.column >= range_bound_date(match.start, attribute.keyword))
        if match.end:
            bounds.append(attribute.column <= range_bound_date(match.end, attribute.keyword))
    else:
        if match.start:
            start = range_bound_time(match.start, attribute.keyword, is_end=False)
            bounds.append(attribute.column >= start)
        if match.end:
            end = range_bound_time(match.end, attribute.keyword, is_end=True)
            bounds.append(attribute.column <= end)
    return and_(*bounds)


def _any_of(attribute: Attribute, values: Sequence[str]) -> ColumnElement[bool]:
    if attribute.kind in (ValueKind.DATE, ValueKind.TIME):
        raise InvalidQueryError(
            f"{attribute.keyword} ({attribute.vr}) cannot match a list of values"
        )
    if not values:
        return false()
    column = (
        attribute.search_column if attribute.kind is ValueKind.PERSON_NAME else attribute.column
    )
    wanted: list[str | int] = list(values)
    if attribute.kind is ValueKind.PERSON_NAME:
        wanted = [pn_search_form(v) or "" for v in values]
    elif attribute.kind is ValueKind.INTEGER:
        wanted = [_integer(v, attribute.keyword) for v in values]
    chunks = [wanted[i : i + UID_CHUNK] for i in range(0, len(wanted), UID_CHUNK)]
    return or_(*(column.in_(chunk) for chunk in chunks))


def _multi_valued_condition(attribute: Attribute, key_match: KeyMatch) -> ColumnElement[bool]:
    """ModalitiesInStudy matches if any series of the study has one of the values."""
    match = key_match.match
    if isinstance(match, SingleValue):
        wanted: tuple[str, ...] = (match.value,)
    elif isinstance(match, ValueList | UidList):
        wanted = match.values if isinstance(match, ValueList) else match.uids
    elif isinstance(match, Wildcard):
        if attribute.keyword != "ModalitiesInStudy":
            raise InvalidQueryError(f"{attribute.keyword} cannot use wildcards")
        series = aliased(Series)
        return exists().where(
            series.study_fk == Study.id, _CaseSensitiveLike(series.modality, match.pattern)
        )
    else:
        raise InvalidQueryError(f"unsupported match for {attribute.keyword}")
    series = aliased(Series)
    if attribute.keyword == "ModalitiesInStudy":
        return exists().where(series.study_fk == Study.id, series.modality.in_(wanted))
    instance = aliased(Instance)
    return exists().where(
        series.study_fk == Study.id,
        instance.series_fk == series.id,
        instance.sop_class_uid.in_(wanted),
    )


class _CaseSensitiveLike(ColumnElement[bool]):
    """DICOM wildcard matching (`*`, `?`), case-sensitive on every database.

    Compiles to `LIKE ... ESCAPE` with `%`, `_` and the escape character escaped, except on
    SQLite, whose LIKE ignores ASCII case: there it is `GLOB`, with `[` escaped.
    """

    inherit_cache = True
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012
        ("like_condition", InternalTraversal.dp_clauseelement),
        ("glob_condition", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, column: Any, pattern: str) -> None:
        self.like_condition = column.like(_like_pattern(pattern), escape=LIKE_ESCAPE)
        self.glob_condition = column.op("GLOB", is_comparison=True)(_glob_pattern(pattern))


@compiles(_CaseSensitiveLike)
def _compile_like(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.like_condition, **kw)


@compiles(_CaseSensitiveLike, "sqlite")
def _compile_glob(element: _CaseSensitiveLike, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.glob_condition, **kw)


def _glob_pattern(pattern: str) -> str:
    """`*` and `?` mean the same in GLOB; `[` opens a character class, so it is escaped."""
    return pattern.replace("[", "[[]")


def _like_pattern(pattern: str) -> str:
    escaped = (
        pattern.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return escaped.replace("*", "%").replace("?", "_")


def _literal_prefix(pattern: str) -> str:
    for index, character in enumerate(pattern):
        if character in "*?":
            return pattern[:index]
    return pattern


def _integer(value: str, keyword: str) -> int:
    try:
        return int(value.strip())
    except ValueError as error:
        raise InvalidQueryError(f"{keyword}: {value!r} is not an integer") from error


def _dicom_value(attribute: Attribute, value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, date) and attribute.kind is ValueKind.DATE:
        return da_from_date(value)
    if isinstance(value, time):
        return tm_from_time(value)
    if attribute.kind is ValueKind.MULTI_VALUED:
        return [item for item in str(value).split("\\") if item]
    return str(value)


def compile_locations(query: Query, *, with_metadata: bool = False) -> Select[Any]:
    """The instances under every entity `query` matches, for C-MOVE, C-GET and WADO.

    `with_metadata` adds each instance's stored DICOM JSON (None where none was stored).
    """
    columns: list[Any] = [
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax_uid,
        Instance.blob_key,
        Instance.size,
        Patient.patient_id,
        Study.study_instance_uid,
        Series.series_instance_uid,
    ]
    joined = _joined(QueryLevel.IMAGE)
    if with_metadata:
        columns.append(InstanceMetadata.dicom_json)
        joined = joined.outerjoin(InstanceMetadata, InstanceMetadata.instance_fk == Instance.id)
    statement = select(*columns).select_from(joined)
    for key_match in query.constraints:
        statement = statement.where(_condition(key_match, QueryLevel.IMAGE))
    return statement.order_by(
        Study.id, Series.series_number, Series.id, Instance.instance_number, Instance.id
    )

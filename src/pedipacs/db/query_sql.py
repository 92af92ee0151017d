"""The ONE compiler from `model.Query` to SQL: PS3.4 C.2.2.2 matching, written once.

C-FIND (every level of Patient Root and Study Root, and the Modality Worklist) and QIDO-RS all
run through here; the catalog of the query's information model says which column each keyword
means.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, and_, exists, false, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from pedipacs.db.catalog import (
    LEVEL_TABLES,
    QUERY_RETRIEVE,
    WORKLIST_ORDER_STATUSES,
    WORKLIST_STEP_STATUSES,
    Attribute,
    Catalog,
    ItemSequence,
    ValueKind,
    catalog_for,
)
from pedipacs.db.tables import (
    ImagingOrder,
    Instance,
    InstanceMetadata,
    Patient,
    RequestedProcedure,
    ScheduledStep,
    Series,
    Study,
)
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
from pedipacs.model.records import AttributeValues, QueryMatch
from pedipacs.model.values import (
    as_from_dates,
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
    catalog = catalog_for(query.information_model)
    statement = select(*_selected_columns(catalog, query.level))
    statement = statement.select_from(_joined(query.level))
    if query.level is QueryLevel.SCHEDULED_PROCEDURE_STEP:
        statement = statement.where(_on_worklist())
    if query.level is QueryLevel.PATIENT:
        # A patient merged into another is known only by the survivor (HL7 A40).
        statement = statement.where(Patient.merged_into_fk.is_(None))
    if patient_scope is not None:
        statement = statement.where(_any_of_patients(patient_scope))
    for key_match in query.constraints:
        statement = statement.where(_condition(key_match, catalog, query.level, query.is_fuzzy))
    statement = statement.order_by(LEVEL_TABLES[query.level].id)
    if query.offset:
        statement = statement.offset(query.offset)
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return statement


def _on_worklist() -> ColumnElement[bool]:
    """The steps a Modality Worklist shows (db/catalog.py states the rule)."""
    return and_(
        ScheduledStep.status.in_([str(s) for s in WORKLIST_STEP_STATUSES]),
        ImagingOrder.status.in_([str(s) for s in WORKLIST_ORDER_STATUSES]),
    )


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
    catalog = catalog_for(query.information_model)
    held = (a.keyword for a in catalog.attributes.values() if a.level.depth <= query.level.depth)
    return tuple(dict.fromkeys((*query.requested_keywords, *held, *catalog.sequences)))


@dataclass(frozen=True, slots=True)
class Projection:
    """What each match of a query carries: its attributes (None where the index holds no
    value for the keyword at the query's level) and the attributes of the sequences' items."""

    attributes: tuple[tuple[str, Attribute | None], ...]
    sequences: tuple[tuple[str, ItemSequence, tuple[tuple[str, Attribute | None], ...]], ...]


def projection_for(query: Query) -> Projection:
    catalog = catalog_for(query.information_model)
    keywords = returned_keywords(query)

    def held(attribute: Attribute | None) -> Attribute | None:
        return attribute if attribute and attribute.level.depth <= query.level.depth else None

    nested = {km.keyword: km.match for km in query.key_matches}
    sequences = []
    for keyword in keywords:
        sequence = catalog.sequences.get(keyword)
        if sequence is None:
            continue
        match = nested.get(keyword)
        if isinstance(match, SequenceMatch) and match.items and not query.includes_all:
            item_keywords = tuple(dict.fromkeys(km.keyword for km in match.items))
        else:
            # A zero-length sequence asks for all its attributes.
            item_keywords = tuple(sequence.attributes)
        inner = tuple((k, held(sequence.attributes.get(k))) for k in item_keywords)
        sequences.append((keyword, sequence, inner))
    return Projection(
        attributes=tuple((k, held(catalog.attributes.get(k))) for k in keywords),
        sequences=tuple(sequences),
    )


def match_from_row(row: Any, projection: Projection) -> QueryMatch:
    """The DICOM string values of one result row, as the projection asks for them."""
    mapping = row._mapping
    values = _values(mapping, projection.attributes)
    items: dict[str, tuple[AttributeValues, ...]] = {}
    for keyword, sequence, inner in projection.sequences:
        key = sequence.attributes[sequence.key]
        is_present = mapping[key.label] is not None
        items[keyword] = (_values(mapping, inner),) if is_present else ()
    return QueryMatch(values, items)


def _values(
    mapping: Mapping[str, Any], attributes: tuple[tuple[str, Attribute | None], ...]
) -> dict[str, str | list[str] | None]:
    values: dict[str, str | list[str] | None] = {}
    for keyword, attribute in attributes:
        if attribute is None:
            values[keyword] = None
        elif attribute.kind is ValueKind.AGE:
            values[keyword] = _age(mapping[attribute.label], mapping[attribute.label + "_on"])
        else:
            values[keyword] = _dicom_value(attribute, mapping[attribute.label])
    return values


def _age(birth_date: date | None, on: date | None) -> str | None:
    """The age on the day of the exam, or today when it has no date."""
    if birth_date is None:
        return None
    return as_from_dates(birth_date, on or date.today()) or None


def _attributes_at_or_above(catalog: Catalog, level: QueryLevel) -> list[Attribute]:
    return [a for a in catalog.every_attribute() if a.level.depth <= level.depth]


def _selected_columns(catalog: Catalog, level: QueryLevel) -> list[Any]:
    columns = []
    for attribute in _attributes_at_or_above(catalog, level):
        columns.append(attribute.column.label(attribute.label))
        if attribute.age_on is not None:
            columns.append(attribute.age_on.label(attribute.label + "_on"))
    return columns


def _joined(level: QueryLevel) -> Any:
    joined: Any = Patient.__table__
    if level is QueryLevel.SCHEDULED_PROCEDURE_STEP:
        return (
            joined.join(ImagingOrder, ImagingOrder.patient_fk == Patient.id)
            .join(RequestedProcedure, RequestedProcedure.order_fk == ImagingOrder.id)
            .join(ScheduledStep, ScheduledStep.procedure_fk == RequestedProcedure.id)
        )
    if level.depth >= QueryLevel.STUDY.depth:
        joined = joined.join(Study, Study.patient_fk == Patient.id)
    if level.depth >= QueryLevel.SERIES.depth:
        joined = joined.join(Series, Series.study_fk == Study.id)
    if level.depth >= QueryLevel.IMAGE.depth:
        joined = joined.join(Instance, Instance.series_fk == Series.id)
    return joined


def _condition(
    key_match: KeyMatch, catalog: Catalog, level: QueryLevel, is_fuzzy: bool = False
) -> ColumnElement[bool]:
    if isinstance(key_match.match, SequenceMatch):
        return _sequence_condition(key_match.keyword, key_match.match, catalog, level)
    attribute = catalog.attributes.get(key_match.keyword)
    if attribute is None or not attribute.is_matchable:
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


def _sequence_condition(
    keyword: str, match: SequenceMatch, catalog: Catalog, level: QueryLevel
) -> ColumnElement[bool]:
    """Sequence matching (C.2.2.2.6): an item matches when every key of the request's item
    matches it. A row holds one item of each sequence the catalog knows, so its columns must
    match every key; a sequence the catalog does not hold is ignored, like any unknown key."""
    sequence = catalog.sequences.get(keyword)
    if sequence is None:
        return and_(True)
    inner = Catalog(sequence.attributes)
    conditions = [
        _condition(km, inner, level) for km in match.items if not isinstance(km.match, Universal)
    ]
    return and_(True, *conditions)


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
        # What an answer must carry when the patient changed after the images came.
        Study.identity_changed,
        Patient.issuer_of_patient_id,
        Patient.patient_name,
        Patient.patient_birth_date,
        Patient.patient_sex,
    ]
    joined = _joined(QueryLevel.IMAGE)
    if with_metadata:
        columns.append(InstanceMetadata.dicom_json)
        joined = joined.outerjoin(InstanceMetadata, InstanceMetadata.instance_fk == Instance.id)
    statement = select(*columns).select_from(joined)
    for key_match in query.constraints:
        statement = statement.where(_condition(key_match, QUERY_RETRIEVE, QueryLevel.IMAGE))
    return statement.order_by(
        Study.id, Series.series_number, Series.id, Instance.instance_number, Instance.id
    )

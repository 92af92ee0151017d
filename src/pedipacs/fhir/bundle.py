"""A search's answer: a `searchset` Bundle with the total, one entry per match (its `fullUrl`
on this server), paging links (`self`, `first`, `previous`, `next`) carrying only the
parameters applied, and an OperationOutcome entry naming the parameters ignored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlencode

from fhir.resources.R4B.bundle import Bundle

from pedipacs.fhir.resources import Json
from pedipacs.fhir.search_params import ParsedSearch
from pedipacs.model.clinical import RecordPage

R = TypeVar("R")


def _link(base: str, used: Iterable[tuple[str, str]], count: int, offset: int) -> str:
    query = urlencode([*used, ("_count", str(count)), ("_offset", str(offset))])
    return f"{base}?{query}"


def paging_links(url: str, used: tuple[tuple[str, str], ...], page: RecordPage[Any]) -> list[Json]:
    """
    >>> from pedipacs.model.clinical import RecordPage
    >>> [l["relation"] for l in paging_links("b/Patient", (), RecordPage((1, 2), 5, 2, 2))]
    ['self', 'first', 'previous', 'next']
    """
    count, offset = page.count, page.offset
    links = [
        {"relation": "self", "url": _link(url, used, count, offset)},
        {"relation": "first", "url": _link(url, used, count, 0)},
    ]
    if offset > 0 and count > 0:
        links.append(
            {"relation": "previous", "url": _link(url, used, count, max(0, offset - count))}
        )
    if page.has_more:
        links.append({"relation": "next", "url": _link(url, used, count, offset + count)})
    return links


def _ignored_outcome(ignored: tuple[str, ...]) -> Json:
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "warning",
                    "code": "not-supported",
                    "diagnostics": f"search parameter {name!r} is not supported here; ignored",
                }
                for name in ignored
            ],
        },
        "search": {"mode": "outcome"},
    }


def searchset(
    base: str,
    resource_type: str,
    search: ParsedSearch[Any],
    page: RecordPage[R],
    resource: Callable[[R], Json],
) -> Bundle:
    """The validated Bundle of one page of a search."""
    entries = []
    for record in page.items:
        found = resource(record)
        entries.append(
            {
                "fullUrl": f"{base}/{resource_type}/{found['id']}",
                "resource": found,
                "search": {"mode": "match"},
            }
        )
    if search.ignored:
        entries.append(_ignored_outcome(search.ignored))
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": page.total,
            "link": paging_links(f"{base}/{resource_type}", search.used, page),
            "entry": entries,
        }
    )

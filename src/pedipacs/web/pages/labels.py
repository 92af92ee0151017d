"""How the reading and reporting pages write ages, waits, durations, moments and viewer links
(small pure functions their templates get), and `page()`, which renders one of them with those."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse

from pedipacs.model.age import paediatric_age
from pedipacs.web.pages.account import render
from pedipacs.web.viewer import VIEWER_PATH

MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR


def age(birth_date: date | None, on: date | datetime | None = None) -> str:
    """A child's age the paediatric way (model/age.py), on `on` (today by default); empty
    without a birth date or before it.

    >>> age(date(2026, 11, 20), date(2026, 11, 25)), age(date(2025, 5, 20), date(2026, 11, 25))
    ('5 days', '18 months')
    >>> age(date(2016, 3, 2), date(2026, 11, 25)), age(date(2026, 9, 1), date(2026, 10, 20))
    ('10 years', '7 weeks')
    >>> age(None), age(date(2026, 11, 25), date(2026, 11, 20))
    ('', '')
    """
    if birth_date is None:
        return ""
    day = on.date() if isinstance(on, datetime) else on
    try:
        return paediatric_age(birth_date, day or date.today())
    except ValueError:  # a date before the birth: bad data, not an age
        return ""


def duration(minutes: float | None) -> str:
    """A wait in words, to the minute.

    >>> duration(4), duration(130), duration(60), duration(3 * 1440 + 61), duration(None)
    ('4 min', '2 h 10 min', '1 h', '3 d 1 h', '')
    """
    if minutes is None:
        return ""
    whole = max(0, int(minutes))
    days, rest = divmod(whole, MINUTES_PER_DAY)
    hours, mins = divmod(rest, MINUTES_PER_HOUR)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def elapsed(since: datetime, now: datetime | None = None) -> str:
    """How long since `since`, in words (an exam's wait, a result left open).

    >>> elapsed(datetime(2026, 1, 1, 8, 0, tzinfo=UTC), datetime(2026, 1, 1, 10, 10, tzinfo=UTC))
    '2 h 10 min'
    """
    return duration(((now or datetime.now(UTC)) - since).total_seconds() / 60)


def clock(minutes: float | None) -> str:
    """Minutes as h:mm (turnaround figures); a dash when there is no figure.

    >>> clock(0), clock(65.4), clock(1600), clock(None)
    ('0:00', '1:05', '26:40', '–')
    """
    if minutes is None:
        return "–"
    hours, mins = divmod(round(minutes), MINUTES_PER_HOUR)
    return f"{hours}:{mins:02d}"


def moment(value: datetime | None) -> str:
    """An instant as the pages print it (UTC, as the orders pages do).

    >>> moment(datetime(2026, 12, 3, 14, 5, tzinfo=UTC)), moment(None)
    ('2026-12-03 14:05 UTC', '')
    """
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def viewer_link(study_instance_uids: Iterable[str]) -> str:
    """The viewer opening these studies together, the first one shown first (OHIF reads a
    comma-separated `StudyInstanceUIDs`); empty without a study.

    >>> viewer_link(["1.2.3", "1.2.4"])
    '/viewer/viewer?StudyInstanceUIDs=1.2.3,1.2.4'
    >>> viewer_link([])
    ''
    """
    uids = [uid for uid in dict.fromkeys(study_instance_uids) if uid]
    if not uids:
        return ""
    return f"{VIEWER_PATH}/viewer?StudyInstanceUIDs={quote(','.join(uids), safe=',')}"


def name_part(text: str | None) -> str:
    """A URL path segment (accession numbers, patient IDs).

    >>> name_part("A 1/2")
    'A%201%2F2'
    """
    return quote(text or "", safe="")


# The helpers every reporting template gets.
TEMPLATE_HELPERS = {
    "age": age,
    "duration": duration,
    "elapsed": elapsed,
    "clock": clock,
    "moment": moment,
    "viewer_link": viewer_link,
    "url_part": name_part,
}


def person(name: str | None) -> str:
    """A DICOM PN as people read it: `FAMILY, Given`.

    >>> person("NGUYEN^LAN"), person("OKORO^CHIDI^EMEKA"), person(None)
    ('NGUYEN, LAN', 'OKORO, CHIDI EMEKA', '')
    """
    parts = [part for part in (name or "").split("=", 1)[0].split("^") if part]
    if not parts:
        return ""
    return f"{parts[0]}, {' '.join(parts[1:])}" if len(parts) > 1 else parts[0]


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """One of the reading and reporting pages, with the helpers above."""
    return render(request, template, status_code, person=person, **TEMPLATE_HELPERS, **context)

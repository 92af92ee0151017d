"""The paediatric age against a month-by-month reference, across month ends and leap years."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pedipacs.model.age import completed_months, paediatric_age

UNITS = ("day", "week", "month", "year")


def anniversary(birth: date, months: int) -> date:
    """The day `months` calendar months after `birth` are completed: the same day of the
    month, or the 1st of the next month when the month is too short to hold it."""
    year, month = divmod(birth.month - 1 + months, 12)
    try:
        return date(birth.year + year, month + 1, birth.day)
    except ValueError:
        year, month = divmod(birth.month + months, 12)
        return date(birth.year + year, month + 1, 1)


def reference_months(birth: date, on: date) -> int:
    months = 0
    while anniversary(birth, months + 1) <= on:
        months += 1
    return months


BIRTHS = [
    date(year, month, day)
    for year in (2023, 2024)
    for month in range(1, 13)
    for day in (1, 15, 28, 29, 30, 31)
    if day <= 28 or (date(year, month, 1) + timedelta(days=day - 1)).month == month
]


@pytest.mark.parametrize("birth", BIRTHS, ids=str)
def test_completed_months_follow_the_calendar_for_three_years(birth: date) -> None:
    for day in range(0, 3 * 366, 3):
        on = birth + timedelta(days=day)
        assert completed_months(birth, on) == reference_months(birth, on), on


@pytest.mark.parametrize(
    "birth", [date(2024, 1, 31), date(2024, 2, 29), date(2023, 12, 1)], ids=str
)
def test_age_units_only_grow_day_by_day(birth: date) -> None:
    previous = (0, 0)
    for day in range(0, 5 * 366):
        count, unit = paediatric_age(birth, birth + timedelta(days=day)).split()
        rank = UNITS.index(unit.removesuffix("s"))
        if rank == previous[0]:
            assert int(count) >= previous[1], day
        else:
            assert rank == previous[0] + 1, day  # days, weeks, months, years: none skipped
        previous = (rank, int(count))


def test_the_first_month_is_in_days_until_the_same_day_of_the_next_month() -> None:
    birth = date(2023, 1, 31)

    assert paediatric_age(birth, date(2023, 2, 28)) == "28 days"
    assert paediatric_age(birth, date(2023, 3, 1)) == "4 weeks"
    assert paediatric_age(date(2024, 2, 29), date(2025, 2, 28)) == "11 months"
    assert paediatric_age(date(2024, 2, 29), date(2026, 3, 1)) == "2 years"

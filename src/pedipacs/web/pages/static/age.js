// Age at the time of a study, shown the paediatric way.
//
// The rule (the same units as the DICOM Patient's Age our demo generator writes):
//   - before one completed calendar month:      days   ("0 days", "1 day", "29 days")
//   - from one month to three completed months:  weeks  ("4 weeks", "12 weeks"), completed weeks
//   - from three months to two completed years:  months ("3 months", "23 months")
//   - from two years:                            years  ("2 years", "15 years")
//
// Calendar arithmetic, not averages: a month is completed when the study's day of the month
// reaches the birth day. When the month is too short to hold that day, the month is completed
// on the first day of the next month; so a child born on 29 February turns one year old on
// 1 March in a common year (the English-law convention), and a child born on 31 January is
// one month old on 1 March. Days are counted between calendar dates in UTC, so daylight
// saving time and the browser's time zone play no part.
//
// When the birth date or the study date is missing (or the study predates the birth), the
// Patient's Age (AS, "nnnD", "nnnW", "nnnM" or "nnnY") recorded by the modality is shown
// instead, in words. Without either, the age is an empty string.

const DAY_MS = 24 * 60 * 60 * 1000;
const AS_UNITS = { D: "day", W: "week", M: "month", Y: "year" };

function plural(count, unit) {
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}

// "20240131" (DA) or "2024-01-31" or the old "2024.01.31" -> {year, month, day}, else null.
export function parseDicomDate(value) {
  if (typeof value !== "string") {
    return null;
  }
  const match = /^(\d{4})[-.]?(\d{2})[-.]?(\d{2})$/.exec(value.trim());
  if (!match) {
    return null;
  }
  const [year, month, day] = match.slice(1).map(Number);
  const time = Date.UTC(year, month - 1, day);
  const check = new Date(time);
  // Reject dates such as 20230230 that Date.UTC would silently roll over.
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) {
    return null;
  }
  return { year, month, day };
}

function daysBetween(from, to) {
  const start = Date.UTC(from.year, from.month - 1, from.day);
  const end = Date.UTC(to.year, to.month - 1, to.day);
  return Math.round((end - start) / DAY_MS);
}

function completedMonths(birth, on) {
  let months = (on.year - birth.year) * 12 + (on.month - birth.month);
  if (on.day < birth.day) {
    months -= 1; // this month's "monthiversary" has not come yet
  }
  return months;
}

// The DICOM Patient's Age (AS) in words: "003W" -> "3 weeks"; "" for anything else.
export function formatAgeString(value) {
  if (typeof value !== "string") {
    return "";
  }
  const match = /^(\d{3})([DWMY])$/.exec(value.trim().toUpperCase());
  if (!match) {
    return "";
  }
  return plural(Number(match[1]), AS_UNITS[match[2]]);
}

// Age from two dates in words, by the rule above; "" when the dates do not allow it.
export function ageBetween(birthDate, studyDate) {
  const birth = parseDicomDate(birthDate);
  const on = parseDicomDate(studyDate);
  if (!birth || !on) {
    return "";
  }
  const days = daysBetween(birth, on);
  if (days < 0) {
    return "";
  }
  const months = completedMonths(birth, on);
  if (months < 1) {
    return plural(days, "day");
  }
  if (months < 3) {
    return plural(Math.floor(days / 7), "week");
  }
  if (months < 24) {
    return plural(months, "month");
  }
  return plural(Math.floor(months / 12), "year");
}

// The age shown in the study list: from the dates when possible, else from Patient's Age.
export function paediatricAge(birthDate, studyDate, patientAge) {
  return ageBetween(birthDate, studyDate) || formatAgeString(patientAge);
}

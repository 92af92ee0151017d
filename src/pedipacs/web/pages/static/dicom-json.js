// Reading PS3.18 DICOM JSON objects (as QIDO-RS returns them) into display text.

import { parseDicomDate } from "./age.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const SEXES = { F: "Female", M: "Male", O: "Other" };

export const TAGS = Object.freeze({
  StudyDate: "00080020",
  AccessionNumber: "00080050",
  ModalitiesInStudy: "00080061",
  StudyDescription: "00081030",
  PatientName: "00100010",
  PatientID: "00100020",
  PatientBirthDate: "00100030",
  PatientSex: "00100040",
  PatientAge: "00101010",
  StudyInstanceUID: "0020000D",
  NumberOfStudyRelatedInstances: "00201208",
});

// All values of an attribute (an empty array when absent or empty).
export function values(object, tag) {
  const element = object ? object[tag] : undefined;
  return element && Array.isArray(element.Value) ? element.Value : [];
}

// The first value of an attribute, or undefined.
export function first(object, tag) {
  return values(object, tag)[0];
}

// A string attribute's first value, trimmed; "" when absent.
export function text(object, tag) {
  const value = first(object, tag);
  return value === undefined || value === null ? "" : String(value).trim();
}

function capitalise(word) {
  // Only names written all in capitals are changed: "JANE" -> "Jane", "MARY-ANN" -> "Mary-Ann".
  if (word !== word.toUpperCase()) {
    return word;
  }
  return word.toLowerCase().replace(/(^|[\s\-'])(\p{L})/gu, (_, start, letter) => start + letter.toUpperCase());
}

// A PN value ("FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX") as "FAMILY, Given Middle".
export function formatPersonName(value) {
  if (!value) {
    return "";
  }
  const alphabetic = typeof value === "string" ? value : value.Alphabetic || value.Ideographic || "";
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = alphabetic.split("^").map((part) => part.trim());
  const givenNames = [given, middle].filter(Boolean).map(capitalise).join(" ");
  const name = [family, givenNames].filter(Boolean).join(", ");
  return [capitalise(prefix), name, suffix].filter(Boolean).join(" ");
}

// A DA value as "12 Mar 2024": day, month abbreviation and year cannot be misread.
export function formatDicomDate(value) {
  const date = parseDicomDate(value);
  if (!date) {
    return value ? String(value) : "";
  }
  return `${date.day} ${MONTHS[date.month - 1]} ${date.year}`;
}

export function formatSex(value) {
  return SEXES[value] || value || "";
}

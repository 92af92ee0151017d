// The study list: searches through QIDO-RS and links each study to the viewer.
// Every value from the archive is written with textContent, never as HTML.

import { paediatricAge } from "./age.js";
import { TAGS, formatDicomDate, formatPersonName, formatSex, first, text, values } from "./dicom-json.js";

const SEARCH_TIMEOUT_MS = 30000;
const STORAGE_KEY = "pedipacs.landing.search";
const INCLUDE_FIELDS = [
  "PatientBirthDate",
  "PatientSex",
  "PatientAge",
  "StudyDescription",
  "ModalitiesInStudy",
  "NumberOfStudyRelatedInstances",
  "AccessionNumber",
];
const COLUMNS = ["Patient", "Patient ID", "Age at study", "Sex", "Modality", "Study date", "Description", "Images"];

// "doe" -> "doe*"; "Doe, Jane" -> "Doe^Jane*"; a name with a wildcard is left as typed.
export function patientNameQuery(input) {
  let name = (input || "").trim();
  if (!name) {
    return "";
  }
  name = name.replace(/\s*,\s*/, "^");
  return /[*?]/.test(name) ? name : `${name}*`;
}

// Two <input type="date"> values ("2024-03-12") as a DICOM date range ("20240312-").
export function studyDateQuery(from, to) {
  const start = (from || "").replaceAll("-", "");
  const end = (to || "").replaceAll("-", "");
  if (!start && !end) {
    return "";
  }
  return start === end ? start : `${start}-${end}`;
}

// The QIDO-RS query string for a search form's values and one page.
export function qidoParameters(search, offset, limit) {
  const parameters = new URLSearchParams();
  const name = patientNameQuery(search.name);
  if (name) {
    parameters.set("PatientName", name);
    parameters.set("fuzzymatching", "true");
  }
  if (search.patientId && search.patientId.trim()) {
    parameters.set("PatientID", search.patientId.trim());
  }
  const dates = studyDateQuery(search.dateFrom, search.dateTo);
  if (dates) {
    parameters.set("StudyDate", dates);
  }
  if (search.modality) {
    parameters.set("ModalitiesInStudy", search.modality);
  }
  for (const field of INCLUDE_FIELDS) {
    parameters.append("includefield", field);
  }
  parameters.set("limit", String(limit));
  parameters.set("offset", String(offset));
  return parameters;
}

// What a study-level QIDO-RS object shows in one row of the list.
export function studyRow(study) {
  const images = first(study, TAGS.NumberOfStudyRelatedInstances);
  return {
    studyInstanceUid: text(study, TAGS.StudyInstanceUID),
    cells: [
      formatPersonName(first(study, TAGS.PatientName)),
      text(study, TAGS.PatientID),
      paediatricAge(text(study, TAGS.PatientBirthDate), text(study, TAGS.StudyDate), text(study, TAGS.PatientAge)),
      formatSex(text(study, TAGS.PatientSex)),
      values(study, TAGS.ModalitiesInStudy).join(", "),
      formatDicomDate(text(study, TAGS.StudyDate)),
      text(study, TAGS.StudyDescription),
      images === undefined || images === null ? "" : String(images),
    ],
  };
}

async function errorMessage(response) {
  const body = (await response.text()).trim();
  try {
    const parsed = JSON.parse(body);
    const message = parsed.detail || parsed.message || parsed.error;
    if (message) {
      return typeof message === "string" ? message : JSON.stringify(message);
    }
  } catch {
    // not JSON: the text itself is the message
  }
  return body.slice(0, 500) || response.statusText;
}

class StudyList {
  constructor(root) {
    this.qidoUrl = root.dataset.qidoUrl;
    this.viewerUrl = root.dataset.viewerUrl;
    this.pageSize = Number(root.dataset.pageSize) || 25;
    this.form = root.querySelector("#study-search");
    this.status = root.querySelector("#search-status");
    this.error = root.querySelector("#search-error");
    this.table = root.querySelector("#study-table");
    this.body = this.table.querySelector("tbody");
    this.more = root.querySelector("#more-studies");
    this.search = {};
    this.loaded = 0;
    this.controller = null;

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start(this.readForm());
    });
    this.form.addEventListener("reset", () => {
      sessionStorage.removeItem(STORAGE_KEY);
      // The reset clears the fields after this event; search once they are empty.
      setTimeout(() => this.start(this.readForm()), 0);
    });
    this.more.addEventListener("click", () => this.fetchPage());
    this.body.addEventListener("click", (event) => this.openRow(event));
  }

  readForm() {
    const data = new FormData(this.form);
    const search = {};
    for (const key of ["name", "patientId", "dateFrom", "dateTo", "modality"]) {
      search[key] = String(data.get(key) || "");
    }
    return search;
  }

  restore() {
    let search = {};
    try {
      search = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "{}") || {};
    } catch {
      search = {};
    }
    for (const [key, value] of Object.entries(search)) {
      const field = this.form.elements.namedItem(key);
      if (field && typeof value === "string") {
        field.value = value;
      }
    }
    this.start(this.readForm());
  }

  start(search) {
    this.search = search;
    this.loaded = 0;
    this.body.replaceChildren();
    this.table.hidden = true;
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(search));
    this.fetchPage();
  }

  async fetchPage() {
    if (this.controller) {
      this.controller.abort();
    }
    const controller = new AbortController();
    this.controller = controller;
    const timer = setTimeout(() => controller.abort(new DOMException("timeout", "TimeoutError")), SEARCH_TIMEOUT_MS);
    // One row more than a page tells whether another page exists.
    const parameters = qidoParameters(this.search, this.loaded, this.pageSize + 1);
    this.showLoading();
    try {
      const response = await fetch(`${this.qidoUrl}?${parameters}`, {
        headers: { Accept: "application/dicom+json" },
        signal: controller.signal,
      });
      if (!response.ok) {
        this.showError(`The archive refused the search (HTTP ${response.status}): ${await errorMessage(response)}`);
        return;
      }
      const studies = response.status === 204 ? [] : await response.json();
      if (!Array.isArray(studies)) {
        this.showError("The archive answered with something that is not a list of studies.");
        return;
      }
      this.showStudies(studies.slice(0, this.pageSize), studies.length > this.pageSize);
    } catch (error) {
      if (controller.signal.aborted && controller !== this.controller) {
        return; // a newer search replaced this one
      }
      const reason = error && error.name === "TimeoutError" ? "the archive did not answer in time" : String(error && error.message);
      this.showError(`The search failed: ${reason}.`);
    } finally {
      clearTimeout(timer);
      if (this.controller === controller) {
        this.controller = null;
        this.table.removeAttribute("aria-busy");
      }
    }
  }

  showLoading() {
    this.error.hidden = true;
    this.more.hidden = true;
    this.table.setAttribute("aria-busy", "true");
    this.status.dataset.state = "loading";
    this.status.textContent = "Searching…";
  }

  showError(message) {
    this.status.dataset.state = "error";
    this.status.textContent = "";
    this.error.textContent = message;
    this.error.hidden = false;
    this.more.hidden = this.loaded === 0;
  }

  showStudies(studies, hasMore) {
    for (const study of studies) {
      this.body.append(this.renderRow(studyRow(study)));
    }
    this.loaded += studies.length;
    this.table.hidden = this.loaded === 0;
    this.more.hidden = !hasMore;
    if (this.loaded === 0) {
      this.status.dataset.state = "empty";
      this.status.textContent = "No studies match.";
      return;
    }
    this.status.dataset.state = "done";
    const count = `${this.loaded} ${this.loaded === 1 ? "study" : "studies"}`;
    this.status.textContent = hasMore ? `Showing the first ${count}; more are available.` : `Showing ${count}.`;
  }

  renderRow(row) {
    const href = `${this.viewerUrl}?StudyInstanceUIDs=${encodeURIComponent(row.studyInstanceUid)}`;
    const tr = document.createElement("tr");
    tr.className = "study";
    tr.dataset.href = href;
    tr.dataset.studyInstanceUid = row.studyInstanceUid;
    row.cells.forEach((value, index) => {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) {
        cell.scope = "row";
        const link = document.createElement("a");
        link.href = href;
        link.textContent = value || "(no name)";
        cell.append(link);
      } else {
        cell.textContent = value;
      }
      cell.dataset.label = COLUMNS[index];
      if (!value) {
        cell.classList.add("is-empty");
      }
      tr.append(cell);
    });
    return tr;
  }

  openRow(event) {
    if (event.target.closest("a") || (window.getSelection() && String(window.getSelection()))) {
      return; // the link handles itself; a text selection is not a click to open
    }
    const row = event.target.closest("tr[data-href]");
    if (row) {
      window.location.assign(row.dataset.href);
    }
  }
}

const root = document.getElementById("landing");
if (root) {
  new StudyList(root).restore();
}

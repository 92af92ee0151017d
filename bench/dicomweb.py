"""DICOMweb: pedipacs against Orthanc's DICOMweb plugin, same data, same HTTP client.

STOW-RS of a CT study on fresh servers, then, on the servers of the last STOW round loaded
with many one-instance studies: QIDO-RS study searches, WADO-RS metadata, one instance and the
whole study, and (pedipacs only) the time the OHIF viewer takes to draw the study's first
image in headless Chromium. Runs interleave the servers; medians of the runs are printed with
the ratio pedipacs/Orthanc and whether each target is met; `--json PATH` writes all of it.

    .venv/bin/python bench/dicomweb.py            # full run: about 15-20 minutes on 2 cores
    .venv/bin/python bench/dicomweb.py --quick    # smoke run: about 1-2 minutes

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from importlib.metadata import version
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from pydicom import dcmread

import clients
import datasets
import environment
import report
from datasets import CtSeries, StudySet
from peers import Orthanc, Pedipacs, Server, rerun_in_private_network
from report import Measurement, Observation, Results, Workload
from runner import (
    BENCH_DIR,
    add_common_arguments,
    chosen_servers,
    common_options,
    noise,
    observing,
    preset_sizes,
    run_and_report,
    say,
    warm_page_cache,
)
from viewer_timing import CHROMIUM, ViewerTimer
from web_clients import (
    DEFAULT_ACCEPT_ENCODING,
    Answer,
    AnswerError,
    DicomwebClient,
    StowRequest,
    Timing,
    time_requests,
)

VIEWER_DIR = BENCH_DIR.parent / "var" / "viewer"
SERVERS = ("pedipacs", "orthanc")
ROOTS = {"pedipacs": Pedipacs.DICOMWEB_ROOT, "orthanc": Orthanc.DICOMWEB_ROOT}
WARMUP = 3  # untimed requests before each timed series


@dataclass(frozen=True)
class Options:
    runs: int
    ct_slices: int
    small_count: int
    queries: int
    retrievals: int
    stow_batch: int
    servers: tuple[str, ...]
    viewer: bool
    accept_encoding: str
    data_dir: Path
    work_dir: Path | None
    json_path: Path | None


FULL = {"runs": 5, "ct_slices": 300, "small_count": 40_000, "queries": 20, "retrievals": 3}
QUICK = {"runs": 2, "ct_slices": 300, "small_count": 1_000, "queries": 10, "retrievals": 1}


@dataclass(frozen=True)
class Target:
    """What pedipacs' figure should be: a bound (`value`) or Orthanc's figure (`value` None)."""

    value: float | None = None

    def describe(self, unit: str) -> str:
        lower = unit == "ms"
        if self.value is None:
            return "<= Orthanc" if lower else ">= Orthanc"
        return f"{'<' if lower else '>'} {self.value:g} {unit}"

    def is_met(self, unit: str, ours: float, orthanc: float | None) -> bool | None:
        bound = orthanc if self.value is None else self.value
        if bound is None:
            return None
        return ours <= bound if unit == "ms" else ours >= bound


# The absolute targets: metadata p50 under 50 ms, QIDO by PatientID p95 under 50 ms;
# the others ask for at least Orthanc's figure.
TARGETS = {
    "stow_ct": Target(),
    "qido_id_p50": Target(),
    "qido_id_p95": Target(50),
    "qido_name_p50": Target(),
    "qido_name_p95": Target(),
    "metadata_p50": Target(50),
    "metadata_identity_p50": Target(50),
    "metadata_p95": Target(),
    "instance_p50": Target(),
    "instance_p95": Target(),
    "instance_rate": Target(),
    "instance_identity_p50": Target(),
    "study_rate": Target(),
}


def parse_options(argv: Sequence[str]) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per figure; the median is reported [5]")
    parser.add_argument("--ct-slices", type=int, help="instances of the CT study [300]")
    parser.add_argument("--small-count", type=int, help="one-instance studies indexed [40000]")
    parser.add_argument(
        "--queries", type=int, help="timed QIDO, metadata and instance requests per run [20]"
    )
    parser.add_argument("--retrievals", type=int, help="whole-study retrievals per run [3]")
    parser.add_argument("--stow-batch", type=int, default=50, help="instances per STOW-RS [50]")
    parser.add_argument("--quick", action="store_true", help="reduced smoke run (~1-2 minutes)")
    parser.add_argument("--no-viewer", action="store_true", help="skip the viewer timing")
    parser.add_argument(
        "--accept-encoding",
        default=DEFAULT_ACCEPT_ENCODING,
        help="the client's Accept-Encoding; 'identity' for uncompressed answers [%(default)s]",
    )
    add_common_arguments(parser, SERVERS)
    args = parser.parse_args(argv)
    sizes = preset_sizes(args, QUICK if args.quick else FULL)
    if min(sizes["runs"], sizes["queries"], sizes["retrievals"], args.stow_batch) < 1:
        parser.error("runs, queries, retrievals and the STOW batch must be at least 1")
    if min(sizes["ct_slices"], sizes["small_count"]) < 4:
        parser.error("the CT study and the study set need at least 4 instances")
    options = Options(
        stow_batch=args.stow_batch,
        servers=chosen_servers(parser, args, SERVERS),
        viewer=not args.no_viewer,
        accept_encoding=args.accept_encoding,
        **common_options(args),
        **sizes,
    )
    return options, args.shared_network


def define_workloads(options: Options, ct: CtSeries, studies: StudySet) -> list[Workload]:
    count = f"{studies.count:,}"
    by_id = f"QIDO-RS studies by PatientID ({studies.patient_id_hits} hits, {count} studies)"
    by_name = (
        f"QIDO-RS studies by PatientName {studies.name_query} ({studies.name_hits} hits, "
        f"{count} studies)"
    )
    metadata = f"WADO-RS metadata of the CT study ({ct.slices} instances)"
    instance = "WADO-RS one CT instance (stored syntax)"
    workloads = [
        Workload("stow_ct", f"STOW-RS CT {ct.slices} instances, {options.stow_batch} per "
                 "request", "inst/s"),
        Workload("qido_id_p50", f"{by_id}, p50", "ms"),
        Workload("qido_id_p95", f"{by_id}, p95", "ms"),
        Workload("qido_name_p50", f"{by_name}, p50", "ms"),
        Workload("qido_name_p95", f"{by_name}, p95", "ms"),
        Workload("metadata_p50", f"{metadata}, p50", "ms"),
        Workload("metadata_p95", f"{metadata}, p95", "ms"),
        Workload("instance_p50", f"{instance}, p50", "ms"),
        Workload("instance_p95", f"{instance}, p95", "ms"),
        Workload("instance_rate", f"{instance}, bytes / p50", "MB/s"),
        Workload("metadata_identity_p50", f"{metadata}, Accept-Encoding: identity, p50", "ms"),
        Workload("instance_identity_p50", f"{instance}, Accept-Encoding: identity, p50", "ms"),
        Workload("study_rate", f"WADO-RS the CT study ({ct.total_bytes / 1e6:,.0f} MB, "
                 "stored syntax)", "MB/s"),
    ]  # fmt: skip
    if options.viewer:
        workloads += [
            Workload("viewer_first", "OHIF viewer: open to first image, empty cache", "ms"),
            Workload("viewer_return", "OHIF viewer: open to first image, cached bundles", "ms"),
        ]
    return workloads


class Benchmark:
    def __init__(
        self,
        options: Options,
        workdir: Path,
        results: Results,
        source: Path,
        ct: CtSeries,
        studies: StudySet,
    ) -> None:
        self.options = options
        self.workdir = workdir
        self.results = results
        self.ct = ct
        self.studies = studies
        self._started = 0
        # pedipacs runs from a copy of its sources, taken at the start.
        self.factories: dict[str, Callable[[Path], Server]] = {
            "pedipacs": partial(Pedipacs, source=source, viewer_dir=VIEWER_DIR),
            "orthanc": partial(Orthanc, dicomweb=True),
        }
        files = sorted(ct.root.rglob("*.dcm"))
        batch = options.stow_batch
        self.stow_requests = [
            StowRequest.of(files[start : start + batch]) for start in range(0, len(files), batch)
        ]
        # The instances retrieved one by one: `queries` of them, spread over the study.
        step = max(1, len(files) // options.queries)
        self.instance_paths = [_instance_path(path) for path in files[::step][: options.queries]]
        self.query_forms: dict[str, dict[str, str]] = {}
        self._viewer_warmed = False

    def _measurement(self, key: str, server: Server) -> Measurement:
        return self.results.measurement(key, server.name)

    def problem(self, text: str) -> None:
        say(f"PROBLEM: {text}")
        self.results.problems.append(text)

    def client(self, server: Server) -> DicomwebClient:
        return DicomwebClient(server, ROOTS[server.name], self.options.accept_encoding)

    def start(self, stack: ExitStack, kind: str, label: str) -> Server:
        """A new server with an empty data folder; the folder goes when the run succeeds."""
        self._started += 1
        folder = self.workdir / f"{self._started:03d}-{label}-{kind}"
        server = stack.enter_context(self.factories[kind](folder))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        return server

    # -- STOW-RS, then the read side on the last round's servers --------------------------

    def run(self) -> None:
        for _ in range(self.options.runs - 1):
            for kind in self.options.servers:
                with ExitStack() as stack:
                    self.stow(self.start(stack, kind, "stow"))
        with ExitStack() as stack:
            servers = []
            for kind in self.options.servers:
                server = self.start(stack, kind, "read")
                self.stow(server)
                servers.append(server)
            for server in servers:
                self.load_index(server)
            for server in servers:
                self.prepare_reads(server)
            timer = self._viewer_timer(stack)
            for _ in range(self.options.runs):
                for server in servers:
                    self.measure_reads(server)
                    if timer is not None and server.name == "pedipacs":
                        self.measure_viewer(server, timer)

    def stow(self, server: Server) -> None:
        before = server.stored_count()
        with observing(server) as observed, self.client(server) as client:
            try:
                seconds = sum(client.store(request).seconds for request in self.stow_requests)
            except AnswerError as error:
                self.problem(f"stow_ct: {server.name}: {error}")
                return
        stored = server.stored_count() - before
        if stored != self.ct.slices:
            self.problem(f"stow_ct: {server.name} reports {stored} stored of {self.ct.slices}")
        rate = self.ct.slices / seconds
        self._measurement("stow_ct", server).add(rate, observed)
        say(f"{'stow_ct':<15} {server.name:<9} {rate:9,.1f} inst/s  {noise(observed)}")

    def load_index(self, server: Server) -> None:
        """The one-instance studies, sent with four storescu (C-STORE) at once; not a figure."""
        say(f"loading {self.studies.count:,} studies into {server.name} (C-STORE)")
        parts = [[part] for part in self.studies.parts]
        seconds = clients.store(server, parts, server.workdir / "client")
        expected = self.studies.count + self.ct.slices
        if server.stored_count() != expected:
            self.problem(f"index: {server.name} holds {server.stored_count()}, not {expected}")
        loads = self.results.context.setdefault("index_load_inst_per_s", {})
        loads[server.name] = round(self.studies.count / seconds, 1)

    def prepare_reads(self, server: Server) -> None:
        """Find how each query value must be written for the server; warm the retrievals."""
        forms: dict[str, str] = {}
        with self.client(server) as client:
            for key, value, expected in self._queries():
                forms[key] = self._query_form(client, key, value, expected)
            client.retrieve(f"/studies/{self.ct.study_instance_uid}")
            client.metadata(self.ct.study_instance_uid)
        self.query_forms[server.name] = forms
        self.results.context.setdefault("query_forms", {})[server.name] = forms

    def _queries(self) -> list[tuple[str, str, int]]:
        studies = self.studies
        return [
            ("PatientID", studies.patient_id, studies.patient_id_hits),
            ("PatientName", studies.name_query, studies.name_hits),
        ]

    def _query_form(self, client: DicomwebClient, key: str, value: str, expected: int) -> str:
        """ "encoded" when the percent-encoded value matches what it should, else "as typed"."""
        encoded = client.search_studies(key, value, encoded=True).items
        if encoded == expected:
            return "encoded"
        typed = client.search_studies(key, value, encoded=False).items
        note = (
            f"{client.server.name}: {key}={value} percent-encoded matched {encoded} studies, "
            f"as typed {typed}; expected {expected}"
        )
        self.results.context.setdefault("query_notes", []).append(note)
        say(note)
        if typed != expected:
            self.problem(f"qido: {note}")
        return "as typed"

    def measure_reads(self, server: Server) -> None:
        study = self.ct.study_instance_uid
        forms = self.query_forms[server.name]
        with self.client(server) as client:
            for (key, value, expected), prefix in zip(
                self._queries(), ("qido_id", "qido_name"), strict=True
            ):
                encoded = forms[key] == "encoded"
                self._timed(
                    server, prefix, partial(client.search_studies, key, value, encoded), expected
                )
            self._timed(server, "metadata", partial(client.metadata, study), self.ct.slices)
            timed = self._timed(server, "instance", self._instances(client), 1)
            if timed is not None:
                timing, observed = timed
                rate = timing.last.part_bytes / 1e6 / (timing.p50_ms / 1000)
                self._measurement("instance_rate", server).add(rate, observed)
            self._study(server, client)
        # Without compression too: servers differ in what they compress.
        with DicomwebClient(server, ROOTS[server.name], "identity") as plain:
            metadata = partial(plain.metadata, study)
            self._timed(server, "metadata_identity", metadata, self.ct.slices)
            self._timed(server, "instance_identity", self._instances(plain), 1)

    def _instances(self, client: DicomwebClient) -> Callable[[], Answer]:
        """A request for the next of the CT instances, in turn."""
        paths = iter(self.instance_paths * (WARMUP + self.options.queries))
        return lambda: client.retrieve(next(paths))

    def _timed(
        self, server: Server, prefix: str, request: Callable[[], Answer], expected: int
    ) -> tuple[Timing, Observation] | None:
        try:
            with observing(server, sample_memory=False) as observed:
                timing = time_requests(request, self.options.queries, WARMUP)
        except AnswerError as error:
            self.problem(f"{prefix}: {server.name}: {error}")
            return None
        if timing.last.items != expected:
            self.problem(f"{prefix}: {server.name} answered {timing.last.items}, not {expected}")
        p50 = self._measurement(f"{prefix}_p50", server)
        p50.add(timing.p50_ms, observed)
        self._measurement(f"{prefix}_p95", server).add(timing.p95_ms, observed)
        _note_answer(p50, timing.last)
        p50.detail.setdefault("client_cpu_ms", []).append(timing.client_cpu_ms)
        say(
            f"{prefix:<15} {server.name:<9} p50 {timing.p50_ms:8,.1f} ms  "
            f"p95 {timing.p95_ms:8,.1f} ms  {noise(observed)}"
        )
        return timing, observed

    def _study(self, server: Server, client: DicomwebClient) -> None:
        path = f"/studies/{self.ct.study_instance_uid}"
        try:
            with observing(server) as observed:
                answers = [client.retrieve(path) for _ in range(self.options.retrievals)]
        except AnswerError as error:
            self.problem(f"study_rate: {server.name}: {error}")
            return
        fastest = min(answers, key=lambda answer: answer.seconds)
        if fastest.items != self.ct.slices:
            self.problem(f"study_rate: {server.name} sent {fastest.items} of {self.ct.slices}")
        if fastest.part_bytes != self.ct.total_bytes:
            note = (
                f"study_rate: {server.name} sent {fastest.part_bytes:,} bytes of DICOM files; "
                f"the files it was sent hold {self.ct.total_bytes:,}"
            )
            notes = self.results.context.setdefault("retrieve_notes", [])
            if note not in notes:
                notes.append(note)
        # The median of this run's retrievals; MB of the parts' bodies (the DICOM files).
        seconds = sorted(answer.seconds for answer in answers)[len(answers) // 2]
        rate = fastest.part_bytes / 1e6 / seconds
        measurement = self._measurement("study_rate", server)
        measurement.add(rate, observed)
        _note_answer(measurement, fastest)
        say(f"{'study_rate':<15} {server.name:<9} {rate:9,.1f} MB/s  {noise(observed)}")

    # -- the viewer ------------------------------------------------------------------------

    def _viewer_timer(self, stack: ExitStack) -> ViewerTimer | None:
        return stack.enter_context(ViewerTimer()) if self.options.viewer else None

    def viewer_url(self, server: Server) -> str:
        study = self.ct.study_instance_uid
        return f"http://127.0.0.1:{server.http_port}/viewer/viewer?StudyInstanceUIDs={study}"

    def measure_viewer(self, server: Server, timer: ViewerTimer) -> None:
        url = self.viewer_url(server)
        try:
            if not self._viewer_warmed:
                # builds the server's adapted viewer files
                timer.first_and_return_visit(url, server.browser_cookies())
                self._viewer_warmed = True
            with observing(server) as observed:
                visits = timer.first_and_return_visit(url, server.browser_cookies())
        except PlaywrightError as error:  # no image within the timeout, or a browser failure
            self.problem(f"viewer: {url}: {error}")
            return
        for key, visit in zip(("viewer_first", "viewer_return"), visits, strict=True):
            measurement = self._measurement(key, server)
            measurement.add(visit.seconds * 1000, observed)
            measurement.detail.setdefault("requests", []).append(visit.requests)
            measurement.detail.setdefault("dicomweb_requests", []).append(visit.dicomweb_requests)
            measurement.detail.setdefault("dicomweb_aborted", []).append(visit.aborted)
            for failure in visit.failures:
                self.problem(f"{key}: the viewer's request failed: {failure}")
            say(f"{key:<15} {server.name:<9} {visit.seconds * 1000:9,.0f} ms  {noise(observed)}")


def _note_answer(measurement: Measurement, answer: Answer) -> None:
    """What the last answer of a run looked like, kept per run in the JSON."""
    for name, value in (
        ("content_encoding", answer.content_encoding),
        ("wire_bytes", answer.wire_bytes),
        ("body_bytes", answer.body_bytes),
        ("part_bytes", answer.part_bytes),
        ("items", answer.items),
    ):
        measurement.detail.setdefault(name, []).append(value)


def _instance_path(path: Path) -> str:
    header = dcmread(path, stop_before_pixels=True)
    return (
        f"/studies/{header.StudyInstanceUID}/series/{header.SeriesInstanceUID}"
        f"/instances/{header.SOPInstanceUID}"
    )


# -- setting up, and the report -------------------------------------------------------------


def check_requirements(options: Options) -> None:
    environment.check_tools(tuple(options.servers))
    missing = []
    if "orthanc" in options.servers and not Orthanc.DICOMWEB_PLUGIN.is_file():
        missing.append(f"{Orthanc.DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb)")
    if options.viewer:
        if not CHROMIUM.is_file():
            missing.append(f"{CHROMIUM} (Debian package chromium)")
        if not (VIEWER_DIR / "index.html").is_file():
            missing.append(f"the OHIF build in {VIEWER_DIR} (make viewer)")
    if missing:
        raise SystemExit(
            f"missing: {'; '.join(missing)}; bash bench/install-deps.sh installs Orthanc and "
            "its plugin; --no-viewer skips the viewer"
        )


def _package_version(package: str) -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def describe(options: Options, ct: CtSeries, studies: StudySet) -> dict[str, object]:
    context = environment.describe(options, ct, studies)
    context["versions"].update(
        {
            "orthanc-dicomweb": _package_version("orthanc-dicomweb"),
            "httpx": version("httpx"),
        }
    )
    if options.viewer:
        stamp = VIEWER_DIR / ".pedipacs-viewer-version"
        context["versions"]["viewer"] = stamp.read_text().split()[0] if stamp.is_file() else "?"
        context["versions"]["chromium"] = _package_version("chromium")
        context["versions"]["playwright"] = version("playwright")
    context["targets"] = {key: target.describe("") for key, target in TARGETS.items()}
    return context


def prepare_data(options: Options) -> tuple[CtSeries, StudySet]:
    say(f"data sets in {options.data_dir} (generated on first use)")
    ct = datasets.ct_series(options.data_dir, options.ct_slices)
    studies = datasets.study_set(options.data_dir, options.small_count, "studies")
    warm_page_cache(ct.root)
    warm_page_cache(studies.root)
    return ct, studies


def run(options: Options, workdir: Path, results: Results) -> None:
    ct, studies = prepare_data(options)
    results.workloads = define_workloads(options, ct, studies)
    results.context = describe(options, ct, studies)
    source = workdir / "source"
    results.context["source"] = environment.snapshot_sources(source)
    Benchmark(options, workdir, results, source, ct, studies).run()
    verdicts = results.context["verdicts"] = {}
    for workload in results.workloads:
        verdicts[workload.key] = _verdict(results, workload)


def _verdict(results: Results, workload: Workload) -> bool | None:
    target = TARGETS.get(workload.key)
    ours = results.find(workload.key, "pedipacs")
    theirs = results.find(workload.key, "orthanc")
    if target is None or ours is None or not ours.values:
        return None
    orthanc = theirs.median if theirs and theirs.values else None
    return target.is_met(workload.unit, ours.median, orthanc)


def figures_table(results: Results) -> str:
    header = ("figure", "unit", "pedipacs", "Orthanc", "ped/Orth", "target", "met")
    rows: list[tuple[str, ...]] = [header]
    for workload in results.workloads:
        cells = []
        for server in SERVERS:
            found = results.find(workload.key, server)
            cells.append(
                f"{report.figure(found.median)} ±{found.spread:.0%}"
                if found and found.values
                else "-"
            )
        ratio = report.ratio(results, workload.key, "orthanc")
        target = TARGETS.get(workload.key)
        met = _verdict(results, workload)
        rows.append(
            (
                workload.label,
                workload.unit,
                *cells,
                "-" if ratio is None else f"{ratio:.2f}",
                target.describe(workload.unit) if target else "-",
                {True: "met", False: "MISSED", None: "-"}[met],
            )
        )
    return report.format_table(rows)


def print_results(results: Results) -> None:
    context = results.context
    if not context:
        return
    source = context.get("source", {})
    versions = context["versions"]
    print(f"\npedipacs DICOMweb benchmark, {context['date']}, {context['machine']['summary']}")
    print(
        f"pedipacs {source.get('commit')} (sources {source.get('digest')}, uncommitted changes: "
        f"{len(source.get('uncommitted_changes_in_src') or [])} files); {versions['orthanc']} "
        f"with DICOMweb plugin {versions['orthanc-dicomweb']}; load average "
        f"{context['load_average_at_start'][0]:.1f} at start, "
        f"{context.get('load_average_at_end', [float('nan')])[0]:.1f} at end"
    )
    if results.workloads:
        runs = context["options"]["runs"]
        print(
            f"medians of {runs} runs (p50/p95: of {context['options']['queries']} requests per "
            f"run, after {WARMUP} warm-up requests); ±: half the range of the runs; "
            f"Accept-Encoding: {context['options']['accept_encoding']}\n"
        )
        print(figures_table(results))
        for line in _notes(results):
            print(line)
        print("\nPeak resident memory (sum over each server's processes, largest run):\n")
        print(report.memory_table(results, SERVERS))
    print(f"\n{report.background_summary(results)}")
    for problem in results.problems:
        print(f"PROBLEM: {problem}")


def _notes(results: Results) -> Iterator[str]:
    context = results.context
    for server, forms in context.get("query_forms", {}).items():
        written = ", ".join(f"{key} {form}" for key, form in forms.items())
        yield f"query values sent to {server}: {written}"
    yield from context.get("query_notes", [])
    yield from context.get("retrieve_notes", [])
    if "index_load_inst_per_s" in context:
        loads = ", ".join(f"{k} {v:,} inst/s" for k, v in context["index_load_inst_per_s"].items())
        yield f"index loaded with C-STORE, 4 associations (not a figure): {loads}"
    for measurement in results.measurements:
        encodings = set(measurement.detail.get("content_encoding", []))
        if encodings - {None}:
            wire = measurement.detail["wire_bytes"][-1]
            body = measurement.detail["body_bytes"][-1]
            yield (
                f"{measurement.workload} {measurement.server}: answered with Content-Encoding "
                f"{', '.join(sorted(map(str, encodings)))} ({wire:,} bytes on the wire, "
                f"{body:,} decoded)"
            )
    cpu = [
        f"{m.workload.removesuffix('_p50')} {m.server} "
        f"{statistics.median(m.detail['client_cpu_ms']):.1f}"
        for m in results.measurements
        if m.detail.get("client_cpu_ms")
    ]
    if cpu:
        yield (
            "client CPU per request, ms (httpx and gunzip, and multipart parsing for retrieves, "
            "are inside the timings; QIDO and metadata JSON parsing is not):"
        )
        yield "  " + ", ".join(cpu)
    for key in ("viewer_first", "viewer_return"):
        found = results.find(key, "pedipacs")
        if found and found.detail.get("requests"):
            yield (
                f"{key}: {max(found.detail['requests'])} requests until drawn, of which "
                f"{max(found.detail['dicomweb_requests'])} DICOMweb (largest run)"
            )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options, shared_network = parse_options(arguments)
    if not shared_network:
        rerun_in_private_network([sys.argv[0], *arguments])
    check_requirements(options)
    return run_and_report(partial(run, options), print_results, options.work_dir, options.json_path)


if __name__ == "__main__":
    sys.exit(main())

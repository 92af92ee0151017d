"""Ingest, query and retrieve: pedipacs against Orthanc and DCMTK storescp on one machine.

Same data, same client commands, fresh server per C-STORE run, runs interleaved across the
servers so that background load falls on all of them alike. Prints the medians of the runs,
the ratios pedipacs/Orthanc and pedipacs/storescp, the servers' peak memory, and pedipacs'
ingest rate as its index grows; `--json PATH` writes all of it.

    .venv/bin/python bench/ingest.py            # full run: about 75 minutes on 2 cores
    .venv/bin/python bench/ingest.py --quick    # smoke run: about 2 minutes

See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydicom.dataset import Dataset

import clients
import datasets
import environment
import report
from datasets import CtSeries, StudySet
from peers import SERVERS, Pedipacs, Server, rerun_in_private_network
from report import GrowthStep, Observation, Results, Workload
from runner import (
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

FIND_WARMUP = 3
# A server that disappears mid-run (on a shared machine, someone's `pkill`) gets new tries.
ATTEMPTS = 3


class ServerLostError(RuntimeError):
    """The server process ended during a timed run."""


@dataclass(frozen=True)
class Options:
    runs: int
    ct_slices: int
    small_count: int
    growth_count: int
    queries: int
    servers: tuple[str, ...]
    groups: tuple[str, ...]
    data_dir: Path
    work_dir: Path | None
    json_path: Path | None


# Workloads run together: a C-GET needs the CT stored, a C-FIND the small instances.
GROUPS = {
    "ct1": ("store_ct_1", "get_ct"),
    "ct4": ("store_ct_4",),
    "small": ("store_small_4", "find_patient_id", "find_patient_name"),
    "growth": (),
}
# Full run and --quick presets; explicit options win.
FULL = {"runs": 5, "ct_slices": 300, "small_count": 40_000, "growth_count": 200_000, "queries": 20}
QUICK = {"runs": 2, "ct_slices": 60, "small_count": 1_000, "growth_count": 3_000, "queries": 10}


def parse_options(argv: Sequence[str]) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per figure; the median is reported [5]")
    parser.add_argument("--ct-slices", type=int, help="slices of the CT series [300]")
    parser.add_argument("--small-count", type=int, help="small instances = studies [40000]")
    parser.add_argument(
        "--growth-count", type=int, help="index size of the last growth step; 0 skips [200000]"
    )
    parser.add_argument("--queries", type=int, help="timed C-FINDs per run [20]")
    parser.add_argument("--quick", action="store_true", help="reduced smoke run (~2 minutes)")
    parser.add_argument(
        "--only", default=",".join(GROUPS), help="comma-separated subset of %(default)s"
    )
    add_common_arguments(parser, tuple(SERVERS))
    args = parser.parse_args(argv)
    sizes = preset_sizes(args, QUICK if args.quick else FULL)
    if (
        min(sizes["runs"], sizes["queries"]) < 1
        or min(sizes["ct_slices"], sizes["small_count"]) < 4
    ):
        parser.error("runs and queries must be at least 1, slices and small instances at least 4")
    servers = chosen_servers(parser, args, tuple(SERVERS))
    groups = tuple(name.strip() for name in args.only.split(",") if name.strip())
    if not groups or set(groups) - set(GROUPS):
        parser.error(f"--only names some of {', '.join(GROUPS)}")
    options = Options(
        servers=servers,
        groups=groups,
        **common_options(args),
        **sizes,
    )
    return options, args.shared_network


def define_workloads(ct: CtSeries, studies: StudySet) -> dict[str, Workload]:
    count = f"{studies.count:,}"
    workloads = (
        Workload("store_ct_1", f"C-STORE CT {ct.slices} x 512x512x16, 1 association",
                 "inst/s", 290, 1280),
        Workload("store_ct_4", f"C-STORE CT {ct.slices}, 4 associations", "inst/s", 490, 1770),
        Workload("store_small_4", f"C-STORE {count} small instances, 4 associations",
                 "inst/s", 810, 4650),
        Workload("find_patient_id",
                 f"C-FIND study by PatientID, open association, {count} studies", "ms", 30),
        Workload("find_patient_name", f"C-FIND study by PatientName {studies.name_query} "
                 f"({studies.name_hits} hits)", "ms", 75),
        Workload("get_ct", f"C-GET of the CT series ({ct.total_bytes / 1e6:,.0f} MB)",
                 "MB/s", 590),
    )  # fmt: skip
    return {workload.key: workload for workload in workloads}


class Benchmark:
    def __init__(
        self,
        options: Options,
        workdir: Path,
        workloads: dict[str, Workload],
        results: Results,
        source: Path,
    ) -> None:
        self.options = options
        self.workdir = workdir
        self.workloads = workloads
        self.results = results
        self._started = 0
        # pedipacs runs from a copy of its sources, taken at the start.
        self.factories: dict[str, Callable[[Path], Server]] = {
            **SERVERS,
            "pedipacs": partial(Pedipacs, source=source),
        }

    @contextmanager
    def fresh_server(self, kind: str, label: str) -> Iterator[Server]:
        """A new server with an empty data folder; the folder goes when the run succeeds."""
        self._started += 1
        folder = self.workdir / f"{self._started:03d}-{label}-{kind}"
        with self.factories[kind](folder) as server:
            yield server
        shutil.rmtree(folder, ignore_errors=True)

    def store_workload(
        self,
        workload: Workload,
        associations: list[list[Path]],
        expected: int,
        then: Callable[[Server], None] | None = None,
    ) -> None:
        """`runs` rounds; in each, every server gets a fresh start and the same storescu runs.
        `then` runs against each server loaded by the last round."""
        for run in range(self.options.runs):
            for kind in self.options.servers:
                is_last = run == self.options.runs - 1
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        with self.fresh_server(kind, workload.key) as server:
                            rate, observed = self._store(
                                server, associations, expected, workload.key
                            )
                            self.results.measurement(workload.key, kind).add(rate, observed)
                            if then is not None and is_last:
                                then(server)
                        break
                    except ServerLostError as error:
                        if attempt == ATTEMPTS:
                            raise
                        self._note_retry(f"{workload.key} run {run + 1}: {error}")

    def _note_retry(self, what: str) -> None:
        say(f"{what}; trying again")
        self.results.context.setdefault("retried_runs", []).append(what)

    def _store(
        self, server: Server, associations: list[list[Path]], expected: int, what: str
    ) -> tuple[float, Observation]:
        """One timed storescu run; the server must then hold `expected` more instances."""
        before = server.stored_count()
        with observing(server) as observed:
            try:
                seconds = clients.store(server, associations, server.workdir / "client")
            except RuntimeError as error:
                if server.is_running():
                    raise
                raise ServerLostError(f"{server.name} stopped during the run") from error
        stored = server.stored_count() - before
        if stored != expected:
            self.results.problems.append(
                f"{what}: {server.name} reports {stored} instances stored, expected {expected}"
            )
        rate = expected / seconds
        say(f"{what:<18} {server.name:<9} {rate:9,.1f} inst/s  {noise(observed)}")
        return rate, observed

    def measure_get(self, server: Server, ct: CtSeries) -> None:
        if not server.supports_queries:
            return
        workload = self.workloads["get_ct"]
        measurement = self.results.measurement(workload.key, server.name)
        retrieved = clients.count_retrieved(server, ct.study_instance_uid, ct.series_instance_uid)
        if retrieved != ct.slices:
            self.results.problems.append(
                f"{workload.key}: {server.name} sent {retrieved} of {ct.slices} instances"
            )
        for _ in range(self.options.runs):
            with observing(server) as observed:
                seconds = clients.get_series(server, ct.study_instance_uid, ct.series_instance_uid)
            measurement.add(ct.total_bytes / 1e6 / seconds, observed)
        say(f"{workload.key:<18} {server.name:<9} {measurement.median:9,.1f} MB/s")

    def measure_find(self, server: Server, studies: StudySet) -> None:
        if not server.supports_queries:
            return
        by_id = clients.study_identifier(PatientID=studies.patient_id)
        by_name = clients.study_identifier(PatientName=studies.name_query)
        self._time_find(server, "find_patient_id", by_id, studies.patient_id_hits)
        self._time_find(server, "find_patient_name", by_name, studies.name_hits)

    def _time_find(self, server: Server, key: str, identifier: Dataset, expected: int) -> None:
        measurement = self.results.measurement(key, server.name)
        cpu: list[float] = measurement.detail.setdefault("client_cpu_ms", [])
        for _ in range(self.options.runs):
            with observing(server) as observed, clients.FindClient(server) as client:
                timing = client.time_queries(identifier, self.options.queries, FIND_WARMUP)
            measurement.add(timing.median_ms, observed)
            cpu.append(timing.client_cpu_ms)
            if timing.matches != expected:
                self.results.problems.append(
                    f"{key}: {server.name} returned {timing.matches} matches, expected {expected}"
                )
        say(f"{key:<18} {server.name:<9} {measurement.median:9,.1f} ms")

    def growth(self, chunks: list[StudySet]) -> None:
        """Send the chunks one after the other to one pedipacs: is the rate flat?

        The last step is bracketed by the same run on fresh servers, so that "at 0" and
        "after N" are measured minutes apart, under the same background load.
        """
        with self.fresh_server("pedipacs", "growth") as server:
            stored = 0
            for number, chunk in enumerate(chunks):
                is_last = number == len(chunks) - 1
                if is_last:
                    self._growth_control(chunks[0])
                self._growth_step(server, chunk, stored)
                stored += chunk.count
            self._growth_control(chunks[0])

    def _growth_step(self, server: Server, chunk: StudySet, stored: int) -> None:
        warm_page_cache(chunk.root)
        parts = [[part] for part in chunk.parts]
        rate, observed = self._store(server, parts, chunk.count, f"growth at {stored:,}")
        self.results.growth.append(GrowthStep(stored, chunk.count, rate, observed))

    def _growth_control(self, chunk: StudySet) -> None:
        warm_page_cache(chunk.root)
        with self.fresh_server("pedipacs", "growth-control") as server:
            parts = [[part] for part in chunk.parts]
            rate, observed = self._store(server, parts, chunk.count, "growth at 0 (fresh)")
        self.results.growth.append(GrowthStep(0, chunk.count, rate, observed, is_control=True))


def prepare_data(options: Options) -> tuple[CtSeries, StudySet, list[StudySet]]:
    say(f"data sets in {options.data_dir} (generated on first use)")
    ct = datasets.ct_series(options.data_dir, options.ct_slices)
    studies = datasets.study_set(options.data_dir, options.small_count, "studies")
    growth: list[StudySet] = []
    if "growth" in options.groups and options.growth_count:
        extra = -(-options.growth_count // options.small_count)
        growth = [studies] + [
            datasets.study_set(options.data_dir, options.small_count, f"growth-{number}")
            for number in range(1, extra + 1)
        ]
    warm_page_cache(ct.root)
    warm_page_cache(studies.root)
    return ct, studies, growth


def run(options: Options, workdir: Path, results: Results) -> None:
    """The selected workloads, filling `results` as figures arrive (an interrupted run has
    some)."""
    ct, studies, growth_chunks = prepare_data(options)
    workloads = define_workloads(ct, studies)
    selected = {key for group in options.groups for key in GROUPS[group]}
    results.workloads = [workload for key, workload in workloads.items() if key in selected]
    results.context = environment.describe(options, ct, studies)
    source = workdir / "source"
    results.context["source"] = environment.snapshot_sources(source)
    bench = Benchmark(options, workdir, workloads, results, source)
    if "ct1" in options.groups:
        bench.store_workload(
            workloads["store_ct_1"], [ct.parts], ct.slices, lambda s: bench.measure_get(s, ct)
        )
    if "ct4" in options.groups:
        bench.store_workload(workloads["store_ct_4"], [[part] for part in ct.parts], ct.slices)
    if "small" in options.groups:
        bench.store_workload(
            workloads["store_small_4"],
            [[part] for part in studies.parts],
            studies.count,
            lambda s: bench.measure_find(s, studies),
        )
    if growth_chunks:
        bench.growth(growth_chunks)


def print_results(results: Results) -> None:
    context = results.context
    if not context:
        return
    source = context.get("source", {})
    print(f"\npedipacs ingest benchmark, {context['date']}, {context['machine']['summary']}")
    print(
        f"pedipacs {source.get('commit')} (sources {source.get('digest')}, uncommitted changes: "
        f"{len(source.get('uncommitted_changes_in_src') or [])} files); load average "
        f"{context['load_average_at_start'][0]:.1f} at start, "
        f"{context.get('load_average_at_end', [float('nan')])[0]:.1f} at end"
    )
    if results.workloads:
        print(f"medians of {context['options']['runs']} runs; ±: half the range of the runs\n")
        print(report.figures_table(results))
        print(report.find_client_note(results))
        print("\nPeak resident memory (sum over each server's processes, largest run):\n")
        print(report.memory_table(results))
    print(f"\n{report.background_summary(results)}")
    if results.growth:
        print("\npedipacs ingest rate as the index grows (4 associations, small instances):\n")
        print(report.growth_table(results))
        print(report.growth_summary(results))
    for problem in results.problems:
        print(f"PROBLEM: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    options, shared_network = parse_options(arguments)
    if not shared_network:
        rerun_in_private_network([sys.argv[0], *arguments])
    environment.check_tools(options.servers)
    return run_and_report(partial(run, options), print_results, options.work_dir, options.json_path)


if __name__ == "__main__":
    sys.exit(main())

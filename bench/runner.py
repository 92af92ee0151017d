"""What the benchmark scripts share: progress lines, what is observed while a figure is taken,
the page cache warmed before timing, and a run that reports what it has, however it ends."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import environment
import report
from noise import BackgroundLoad
from peers import MemorySampler, Server
from report import Observation, Results

BENCH_DIR = Path(__file__).resolve().parent


def add_common_arguments(parser: argparse.ArgumentParser, servers: Sequence[str]) -> None:
    """--servers, --data-dir, --work-dir, --json and --shared-network."""
    parser.add_argument(
        "--servers", default=",".join(servers), help="comma-separated subset of %(default)s"
    )
    parser.add_argument("--data-dir", type=Path, default=BENCH_DIR / "results" / "data")
    parser.add_argument("--work-dir", type=Path, help="where servers store (default: temp)")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    parser.add_argument(
        "--shared-network",
        action="store_true",
        help="do not run in a private network namespace (Orthanc and storescp then listen "
        "on every interface)",
    )


def preset_sizes(args: argparse.Namespace, preset: dict[str, int]) -> dict[str, int]:
    """The preset's sizes (full run or --quick), where no option says otherwise."""
    return {
        key: value if getattr(args, key) is None else getattr(args, key)
        for key, value in preset.items()
    }


def chosen_servers(
    parser: argparse.ArgumentParser, args: argparse.Namespace, known: Sequence[str]
) -> tuple[str, ...]:
    servers = tuple(name.strip() for name in args.servers.split(",") if name.strip())
    if set(servers) - set(known) or "pedipacs" not in servers:
        parser.error(f"--servers must include pedipacs and name only {', '.join(known)}")
    return servers


def common_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data_dir": args.data_dir.resolve(),
        "work_dir": args.work_dir,
        "json_path": args.json_path,
    }


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def observing(server: Server, sample_memory: bool = True) -> Iterator[Observation]:
    """The server's peak memory and the machine's background load while the block runs.

    Memory is sampled by a thread of this process, which scans /proc every 0.2 s (~2 ms of
    CPU, holding the GIL). Around requests of a few milliseconds pass `sample_memory=False`:
    the memory is then read once, when the block ends.
    """
    observation = Observation()
    with ExitStack() as stack:
        memory = stack.enter_context(MemorySampler(server)) if sample_memory else None
        background = stack.enter_context(BackgroundLoad(server))
        yield observation
    observation.peak_rss_bytes = memory.peak_bytes if memory else server.rss_bytes()
    observation.background_cores = background.cores


def noise(observed: Observation) -> str:
    return f"(background {observed.background_cores:.2f} cores)"


def warm_page_cache(root: Path) -> None:
    """Read every file once, so that no run pays for the client's first disk read."""
    for path in root.rglob("*.dcm"):
        path.read_bytes()


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_and_report(
    run: Callable[[Path, Results], None],
    print_results: Callable[[Results], None],
    work_dir: Path | None,
    json_path: Path | None,
) -> int:
    """`run(workdir, results)` in a new temporary folder; then print (and write) the results.

    The folder goes when the run succeeds; after an error or an interruption the partial
    figures are still printed and the folder, with the servers' logs, is kept. Returns the
    exit status: 1 when a problem was recorded.
    """
    # Servers and tools are stopped by `with` blocks and `finally`: make every stop signal,
    # even a SIGINT ignored by a parent shell, unwind through them.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="pedipacs-bench-", dir=work_dir))
    results = Results()
    try:
        run(workdir, results)
    except BaseException as error:
        results.problems.append(f"run stopped early: {error!r}")
        say(f"stopped early; server folders and logs kept in {workdir}")
        raise
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if results.context:
            environment.finish(results.context)
        print_results(results)
        if json_path and results.context:
            report.write_json(results, json_path)
            say(f"results written to {json_path}")
    return 1 if results.problems else 0

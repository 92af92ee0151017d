"""What the figures were measured on: machine, versions, options, data and background load."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = REPOSITORY / "src" / "pedipacs"
TOOLS = {
    "pedipacs": ("echoscu", "storescu", "getscu"),
    "orthanc": ("Orthanc",),
    "storescp": ("storescp",),
}


def check_tools(servers: tuple[str, ...]) -> None:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin"
    missing = [
        tool
        for server in servers
        for tool in TOOLS[server]
        if shutil.which(tool, path=path) is None
    ]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (make system-deps installs DCMTK)")


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except OSError as error:
        return f"unavailable ({error})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def machine() -> dict[str, Any]:
    cores = os.cpu_count() or 1
    memory = _memory_gb()
    summary = f"{cores} cores ({_cpu_model()}), {memory:.0f} GB RAM, Linux {platform.release()}"
    return {
        "summary": summary,
        "cores": cores,
        "cpu": _cpu_model(),
        "memory_gb": round(memory, 1),
        "kernel": platform.release(),
    }


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the repository, None if git is unavailable."""
    try:
        result = subprocess.run(
            ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout.rstrip("\n") if result.returncode == 0 else None


def versions() -> dict[str, str]:
    return {
        "pedipacs": version("pedipacs"),
        "python": sys.version.split()[0],
        "pydicom": version("pydicom"),
        "pynetdicom": version("pynetdicom"),
        "sqlalchemy": version("sqlalchemy"),
        "orthanc": _first_line(["Orthanc", "--version"]),
        "dcmtk": _first_line(["storescu", "--version"]).strip("$ "),
    }


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {key: _plain(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def describe(options: Any, *data_sets: Any) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "options": _plain(options),
        "data": [_plain(data_set) for data_set in data_sets],
        "private_network": os.environ.get("BENCH_PRIVATE_NETWORK") == "1",
        "load_average_at_start": list(os.getloadavg()),
    }


def finish(context: dict[str, Any]) -> None:
    context["load_average_at_end"] = list(os.getloadavg())
    if "source" in context:
        changed = source_digest(PACKAGE) != context["source"]["digest"]
        context["source"]["working_tree_changed_during_run"] = changed
    context["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def source_digest(package: Path) -> str:
    """A digest of the package's files, to tell whether the code changed."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def snapshot_sources(destination: Path) -> dict[str, Any]:
    """Copy src/pedipacs under `destination`, for the servers to run (PYTHONPATH) instead of the
    working tree, which others may edit while the benchmark runs."""
    shutil.copytree(PACKAGE, destination / "pedipacs", ignore=shutil.ignore_patterns("__pycache__"))
    probe = subprocess.run(
        [sys.executable, "-c", "import pedipacs; print(pedipacs.__file__)"],
        env={**os.environ, "PYTHONPATH": str(destination)},
        capture_output=True,
        text=True,
        check=True,
    )
    changes = _git("--no-optional-locks", "status", "--porcelain", "--", "src")
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes_in_src": None if changes is None else changes.splitlines(),
        "digest": source_digest(destination / "pedipacs"),
        "servers_import": probe.stdout.strip(),
    }

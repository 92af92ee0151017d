"""How busy the machine was with work that is not the benchmark's, while a figure was taken.

On a shared machine the absolute figures move with other people's load. `BackgroundLoad`
measures it: the CPU time the whole machine spent (/proc/stat) minus the CPU time of the
benchmark itself (this process, the tools it waited for, and the server's session), averaged
over the block, in cores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Self

from peers import Server, session_members

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU time spent on anything but idle and I/O wait, all cores together."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _session_seconds(server: Server) -> float:
    """CPU time of the server's processes, with that of the children they waited for."""
    total = 0
    for pid in session_members(server.session):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


class BackgroundLoad:
    """Cores used by other processes during the block (0 on an idle machine)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self.cores = 0.0
        self._start = (0.0, 0.0, 0.0, 0.0)

    def _sample(self) -> tuple[float, float, float, float]:
        return (
            time.monotonic(),
            _machine_busy_seconds(),
            _own_seconds(),
            _session_seconds(self._server),
        )

    def __enter__(self) -> Self:
        self._start = self._sample()
        return self

    def __exit__(self, *_exc: object) -> None:
        end = self._sample()
        wall, busy, own, server = (
            after - before for after, before in zip(end, self._start, strict=True)
        )
        if wall > 0:
            self.cores = max(0.0, (busy - own - server) / wall)

"""Whether other processes are using the CPU while quantbench times: on 2 cores a second job makes torch's eager
fp32 about 10x slower at batch 1 (its OpenMP threads wait on a descheduled peer) and compiled or peer engines far
less, so ratios measured under contention rank methods wrongly. Read from /proc (Linux); elsewhere nothing is known."""

from __future__ import annotations

import os
import time
from pathlib import Path

# Cores' worth of CPU time others may use before the timings are called contended (background daemons idle near 0).
BUSY_CORES = 0.25


class OtherLoad:
    """Cores' worth of CPU time other processes used while the ``with`` block ran (``cores``; None: /proc unreadable).

    Example:
        >>> with OtherLoad() as load:
        ...     time.sleep(0.1)
        >>> load.cores is None or load.cores >= 0
        True
    """

    cores: float | None = None

    def __enter__(self) -> "OtherLoad":
        self._start = _snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _snapshot()
        if self._start is None or end is None:
            return
        (wall0, total0, own0), (wall1, total1, own1) = self._start, end
        ticks = os.sysconf("SC_CLK_TCK") * max(wall1 - wall0, 1e-9)
        self.cores = max(0.0, ((total1 - total0) - (own1 - own0)) / ticks)


def other_cores(window_s: float = 0.5) -> float | None:
    """Cores' worth of CPU time processes other than this one used during ``window_s`` (None: /proc unreadable)."""
    with OtherLoad() as load:
        time.sleep(window_s)
    return load.cores


def contention_warning(others: float | None) -> str | None:
    """One line to print when others used the CPU while quantbench timed (``others`` cores), else None."""
    if others is None or others < BUSY_CORES:
        return None
    return (f"other processes used {others:.1f} of {os.cpu_count()} cores while timing: timings under contention are "
            "not comparable (eager torch slows far more than compiled or peer engines); stop them and time again")


def _snapshot() -> tuple[float, int, int] | None:
    try:
        return time.perf_counter(), _busy_ticks(), _own_ticks()
    except (OSError, ValueError, IndexError):
        return None


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values[:8]) - idle


def _own_ticks() -> int:
    # After the command name (which may hold spaces), fields 14 and 15 of /proc/self/stat are utime and stime.
    rest = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])

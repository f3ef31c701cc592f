"""Peak memory from /proc, for the benchmarks (Linux).

This process: the kernel's high-water mark of resident memory (VmHWM), which writing "5" to
/proc/self/clear_refs resets to the current resident size, so each stage of a run gets its own
peak. Where that write is refused, the figure is ru_maxrss: the peak since the process started
(``PEAK_SOURCE`` says which). A child process tree: resident memory of every process in it,
sampled every 0.1 s, and the largest sum seen.
"""

from __future__ import annotations

import resource
import subprocess
import time
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _can_reset() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


PEAK_SOURCE = "VmHWM, reset per stage" if _can_reset() else "ru_maxrss (cumulative: no reset)"


def reset_peak() -> None:
    """Start a new high-water mark (a no-op where /proc/self/clear_refs is refused)."""
    if PEAK_SOURCE.startswith("VmHWM"):
        CLEAR_REFS.write_text("5")


def peak_mb() -> float:
    """This process's peak resident memory since the last :func:`reset_peak`, in MB."""
    if PEAK_SOURCE.startswith("VmHWM"):
        return _status_kb(STATUS, "VmHWM") / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kb(path: Path, field: str) -> int:
    """One ``kB`` field of a /proc/<pid>/status file; 0 once the process is gone."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value.split()[0])
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def tree_memory_mb(root: int) -> tuple[float, float]:
    """(resident MB of ``root`` and all its descendants now, the largest one's peak MB)."""
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        status = Path(f"/proc/{pid}/status")
        total += _status_kb(status, "VmRSS")
        largest = max(largest, _status_kb(status, "VmHWM"))
        stack.extend(_children(pid))
    return total / 1024, largest / 1024


def run_sampled(
    command: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[int, float, float, float]:
    """Run ``command`` (output to ``log``); (exit status, seconds, peak MB of the process
    tree, peak MB of its largest process)."""
    start = time.perf_counter()
    with log.open("wb") as sink:
        child = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env=env)
        tree = largest = 0.0
        while child.poll() is None:
            now, peak = tree_memory_mb(child.pid)
            tree, largest = max(tree, now), max(largest, peak)
            time.sleep(0.1)
    return child.returncode, time.perf_counter() - start, tree, largest

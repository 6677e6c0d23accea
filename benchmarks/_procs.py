"""Run one command in a fresh process and measure its wall time and memory (stdlib only, Linux).

Two memory figures, because kb index extracts in worker processes:
- `peak_rss_mb`: the largest resident set of any one process of the run (os.wait4's ru_maxrss covers
  the child and the descendants it reaped), exact;
- `peak_tree_mb`: the largest sum of resident sets over the whole process tree, sampled every 50 ms.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measured:
    returncode: int
    wall: float
    peak_rss_mb: float
    peak_tree_mb: float
    stdout: str
    stderr: str


def _tree_rss(root: int) -> int:
    """Bytes resident in `root` and all its descendants, from /proc."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[int(entry)] = int(fields[1])
        rss[int(entry)] = int(fields[21]) * PAGE
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(child for child, ppid in parent.items() if ppid == pid)
    return total


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.05):
                peak = max(peak, _tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode, wall, usage.ru_maxrss / 1024, max(peak, usage.ru_maxrss * 1024) / 2**20,
            out.read(), err.read(),
        )  # fmt: skip

"""The extraction pool: order, a time budget per task, survival of a crashing worker, and batches of
small tasks in which one bad task costs only itself."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kb.config import Settings
from kb.extract_pool import ExtractionPool
from kb.index import SearchIndex
from kb.ingest import sync


def square_or_misbehave(n: int) -> int | str:
    """Work for the pool's tests: -1 spins forever, -2 kills its own process, -3 is slow."""
    if n == -3:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            pass
        return 9
    if n == -1:
        while True:
            pass
    if n == -2:
        os._exit(3)
    return n * n


def read_or_misbehave(path: str) -> str:
    """Work for the batch tests: a real file's text, shouted; a file saying "hang" spins forever,
    one saying "crash" kills its own process."""
    text = Path(path).read_text()
    if text == "hang":
        while True:
            pass
    if text == "crash":
        os._exit(3)
    return text.upper()


def pool(
    jobs: int,
    timeout: float = 30.0,
    work: Callable[..., int | str] = square_or_misbehave,
    batch: int = 1,
    batch_weight: int = 1,
    weigh: Callable[[tuple[object, ...]], int] = lambda _task: 0,
) -> ExtractionPool[int | str]:
    return ExtractionPool(
        work,
        jobs=jobs,
        timeout=timeout,
        on_timeout=lambda task: f"timeout {task[0]}",
        on_crash=lambda task: f"crash {task[0]}",
        batch=batch,
        batch_weight=batch_weight,
        weigh=weigh,
    )


def test_results_come_back_in_submission_order() -> None:
    with pool(jobs=2) as p:
        assert list(p.map((n,) for n in range(200))) == [n * n for n in range(200)]


def test_a_task_over_its_budget_is_stopped_and_the_rest_go_on() -> None:
    with pool(jobs=2, timeout=1.0) as p:
        assert list(p.map([(2,), (-1,), (3,), (4,)])) == [4, "timeout -1", 9, 16]


def test_a_worker_that_dies_is_replaced() -> None:
    with pool(jobs=1) as p:
        assert list(p.map([(2,), (-2,), (5,)])) == [4, "crash -2", 25]


def test_a_pdf_over_the_extraction_budget_is_reported_as_failed(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    shutil.copy(Path(__file__).parent.parent / "sample_docs" / "manual.pdf", root / "slow.pdf")
    settings = Settings(root=root, index_dir=tmp_path / "idx", extract_timeout=0.001)
    index = SearchIndex.open(settings.index_dir, root)
    report = sync(settings, index)
    assert [(f.path, "longer than" in f.error) for f in report.failed] == [("slow.pdf", True)]
    # Given time, the same file indexes: nothing about the stopped attempt stuck.
    assert sync(settings.model_copy(update={"extract_timeout": 60.0}), index).added == 1


def test_a_slow_task_holding_back_many_results_does_not_stall_the_pool() -> None:
    tasks = [(-3,)] + [(n,) for n in range(1, 200)]
    with pool(jobs=2) as p:
        assert list(p.map(tasks)) == [9] + [n * n for n in range(1, 200)]


def test_tasks_queued_behind_a_stopped_task_are_still_done() -> None:
    tasks = [(n,) for n in range(1, 6)] + [(-1,)] + [(n,) for n in range(6, 30)]
    with pool(jobs=1, timeout=1.0) as p:
        assert list(p.map(tasks)) == [n * n for n in range(1, 6)] + ["timeout -1"] + [
            n * n for n in range(6, 30)
        ]


def files(root: Path, texts: list[str]) -> list[tuple[str]]:
    """One real file per text, as tasks of `read_or_misbehave`."""
    root.mkdir(exist_ok=True)
    tasks = []
    for n, text in enumerate(texts):
        path = root / f"f{n:03d}.txt"
        path.write_text(text)
        tasks.append((str(path),))
    return tasks


def test_batches_come_back_in_submission_order() -> None:
    with pool(jobs=2, batch=7) as p:
        assert list(p.map((n,) for n in range(500))) == [n * n for n in range(500)]


def test_a_hanging_file_in_a_batch_fails_alone_and_the_rest_of_its_batch_is_done(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kb.extract_pool")
    texts = [f"good {n}" for n in range(40)]
    texts[11] = "hang"
    tasks = files(tmp_path, texts)
    with pool(jobs=2, timeout=2.0, work=read_or_misbehave, batch=8) as p:
        results = list(p.map(tasks))
    assert results == [f"timeout {tasks[11][0]}" if n == 11 else f"GOOD {n}" for n in range(40)]
    # It was stopped in a batch, whose files were then retried one by one.
    assert [r.getMessage() for r in caplog.records if "retrying each alone" in r.getMessage()] == [
        "a batch of 8 tasks was stopped; retrying each alone"
    ]


def test_a_file_that_kills_its_worker_in_a_batch_fails_alone(tmp_path: Path) -> None:
    texts = [f"good {n}" for n in range(30)]
    texts[3] = "crash"
    tasks = files(tmp_path, texts)
    with pool(jobs=1, work=read_or_misbehave, batch=8) as p:
        results = list(p.map(tasks))
    assert results == [f"crash {tasks[3][0]}" if n == 3 else f"GOOD {n}" for n in range(30)]


def test_a_task_as_heavy_as_a_batch_goes_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kb.extract_pool")
    tasks = files(tmp_path, ["good 0", "good 1", "hang", "good 3", "good 4"])
    heavy = tasks[2]
    with pool(
        jobs=1,
        timeout=1.0,
        work=read_or_misbehave,
        batch=8,
        batch_weight=10,
        weigh=lambda t: 10 * (t == heavy),
    ) as p:
        results = list(p.map(tasks))
    assert results == ["GOOD 0", "GOOD 1", f"timeout {heavy[0]}", "GOOD 3", "GOOD 4"]
    assert not [r for r in caplog.records if "retrying each alone" in r.getMessage()]  # stopped alone, once


def pid_and_square(n: int) -> tuple[int, int]:
    return os.getpid(), n * n


def test_the_parent_never_runs_a_task_it_is_not_allowed_to_nor_any_before_it() -> None:
    with ExtractionPool(
        pid_and_square,
        jobs=2,
        timeout=30,
        on_timeout=lambda _task: (0, -1),
        on_crash=lambda _task: (0, -2),
        batch=8,
        inline=lambda task: task[0] != 300,
    ) as p:
        results = list(p.map((n,) for n in range(400)))
    assert [square for _, square in results] == [n * n for n in range(400)]
    by_parent = [n for n, (pid, _) in enumerate(results) if pid == os.getpid()]
    assert by_parent == list(range(400 - len(by_parent), 400)) and 300 not in by_parent


# In a fresh interpreter, whose first pool starts the forkserver (which imports the work's modules).
FIRST_POOL = """
import json, os
from kb.extract_pool import ExtractionPool
anything = lambda _task: True
with ExtractionPool(os.getpid, jobs=2, timeout=30, on_timeout=print, on_crash=print, inline=anything) as pool:
    pids = list(pool.map([()] * 3000))
print(json.dumps([n for n, pid in enumerate(pids) if pid == os.getpid()]))
"""


def test_while_the_first_workers_start_the_parent_runs_the_last_tasks_itself() -> None:
    run = subprocess.run([sys.executable, "-c", FIRST_POOL], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    by_parent = json.loads(run.stdout)
    assert by_parent, "the parent ran nothing while its workers started"
    assert by_parent == list(range(3000 - len(by_parent), 3000))

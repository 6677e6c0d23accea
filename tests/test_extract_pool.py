"""The extraction pool: order, a time budget per task, and survival of a crashing worker."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

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


def pool(jobs: int, timeout: float = 30.0) -> ExtractionPool[int | str]:
    return ExtractionPool(
        square_or_misbehave,
        jobs=jobs,
        timeout=timeout,
        on_timeout=lambda task: f"timeout {task[0]}",
        on_crash=lambda task: f"crash {task[0]}",
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

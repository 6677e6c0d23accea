"""What an extraction worker logs or warns reaches the parent's logging, in order with the results,
filtered by the parent's levels; nothing of it is printed by the worker itself."""

from __future__ import annotations

import logging
import warnings

import pytest

from kb.extract_pool import ExtractionPool

worker_log = logging.getLogger("kb.tests.worker")


def chatty(n: int) -> int:
    """Work for these tests: logs at three levels, warns, and logs a caught exception."""
    worker_log.debug("debug %d", n)
    worker_log.info("info %d", n)
    worker_log.warning("warning %d", n, extra={"fields": {"n": n}})
    warnings.warn(f"warned {n}", UserWarning, stacklevel=1)
    try:
        raise ValueError(f"bad {n}")
    except ValueError:
        worker_log.exception("caught %d", n)
    return n * n


def run(tasks: list[int]) -> list[int]:
    with ExtractionPool(
        chatty, jobs=2, timeout=30, on_timeout=lambda _task: -1, on_crash=lambda _task: -2
    ) as pool:
        return list(pool.map((n,) for n in tasks))


def test_worker_log_records_reach_the_parents_handlers_at_the_parents_levels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert run([1, 2, 3]) == [1, 4, 9]
    mine = [r for r in caplog.records if r.name == "kb.tests.worker"]
    assert sorted(r.getMessage() for r in mine if r.levelno == logging.INFO) == ["info 1", "info 2", "info 3"]
    assert not [r for r in mine if r.levelno == logging.DEBUG]  # dropped, as the parent would
    warning = next(r for r in mine if r.getMessage() == "warning 2")
    assert warning.fields == {"n": 2}  # type: ignore[attr-defined]
    caught = next(r for r in mine if r.getMessage() == "caught 3")
    assert caught.exc_text is not None and "ValueError: bad 3" in caught.exc_text


def test_warnings_in_a_worker_become_log_records_in_the_parent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    run([7])
    warned = [r for r in caplog.records if r.name == "py.warnings"]
    assert len(warned) == 1
    assert "UserWarning: warned 7" in warned[0].getMessage()

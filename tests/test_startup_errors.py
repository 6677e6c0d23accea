"""`kb serve` that cannot start says why in one line, with the documented exit code, before any
protocol traffic, on stdio and on HTTP alike (issue 12, item 9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kb.config import Settings
from kb.ingest import sync
from kb.library import Library


def serve(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # stdin stays open (a pipe nobody writes): a server that started anyway would not exit.
    with subprocess.Popen(
        [sys.executable, "-m", "kb", "serve", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as served:
        try:
            out, err = served.communicate(timeout=30)
        finally:
            served.kill()
    return subprocess.CompletedProcess(served.args, served.returncode, out, err)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nalpha\n")
    return root


def built_for_another_root(tmp_path: Path, docs: Path) -> Path:
    other = tmp_path / "other"
    other.mkdir()
    library = Library.open(Settings(root=other, index_dir=tmp_path / "idx"))
    sync(library.settings, library.index)
    library.close()
    return tmp_path / "idx"


def under_a_file(tmp_path: Path, docs: Path) -> Path:
    (tmp_path / "plain-file").write_text("not a folder")
    return tmp_path / "plain-file" / "idx"


def where_nothing_can_be_written(tmp_path: Path, docs: Path) -> Path:
    return Path("/proc/kb-index")  # refused even to root, like a read-only working directory


@pytest.mark.parametrize(
    ("make_index_dir", "says"),
    [
        (built_for_another_root, "--rebuild"),
        (under_a_file, "cannot use"),
        (where_nothing_can_be_written, "cannot use"),
    ],
)
@pytest.mark.parametrize("transport", [[], ["--http", "127.0.0.1:0"]])
def test_serve_that_cannot_open_its_index_says_why_and_exits_2(
    tmp_path: Path, docs: Path, make_index_dir, says: str, transport: list[str]
) -> None:
    index_dir = make_index_dir(tmp_path, docs)
    run = serve(docs, "--index-dir", index_dir, *transport)
    assert run.returncode == 2, run.stderr
    assert says in run.stderr
    assert "Traceback" not in run.stderr and "ExceptionGroup" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stdout == ""

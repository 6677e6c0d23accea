"""A sync whose root is gone (deleted, moved away, no longer a folder) changes nothing and says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kb.config import Settings
from kb.errors import ConfigError, RootMissingError
from kb.index import SearchIndex
from kb.ingest import sync, sync_paths

TIMEOUT = 30.0


def indexed_root(tmp_path: Path) -> tuple[Settings, SearchIndex]:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.md").write_text("# A\n\nAbout aardvarks.\n")
    (root / "sub" / "b.md").write_text("# B\n\nAbout badgers.\n")
    settings = Settings(root=root, index_dir=tmp_path / "idx")
    index = SearchIndex.open(settings.index_dir, root)
    sync(settings, index)
    return settings, index


def test_a_full_sync_of_a_deleted_root_raises_and_keeps_every_document(tmp_path: Path) -> None:
    settings, index = indexed_root(tmp_path)
    shutil.rmtree(settings.root)
    with pytest.raises(RootMissingError) as caught:
        sync(settings, index)
    assert caught.value.root == str(index.root)
    assert isinstance(caught.value, ConfigError)
    assert "does not exist" in str(caught.value)
    assert index.document_paths() == ["a.md", "sub/b.md"]


def test_a_per_path_sync_of_a_deleted_root_raises_and_keeps_every_document(tmp_path: Path) -> None:
    settings, index = indexed_root(tmp_path)
    shutil.rmtree(settings.root)
    with pytest.raises(RootMissingError):
        sync_paths(settings, index, ["a.md", "sub", "sub/b.md"])
    assert index.document_paths() == ["a.md", "sub/b.md"]


def test_a_root_that_became_a_file_is_not_a_folder_to_sync(tmp_path: Path) -> None:
    settings, index = indexed_root(tmp_path)
    shutil.rmtree(settings.root)
    settings.root.write_text("not a folder any more\n")
    with pytest.raises(RootMissingError, match="is not a folder"):
        sync(settings, index)
    assert index.document_paths() == ["a.md", "sub/b.md"]


def test_kb_index_on_a_root_deleted_after_it_started_exits_2_and_removes_nothing(tmp_path: Path) -> None:
    settings, index = indexed_root(tmp_path)
    index.close()
    # A real pause between the command-line check of ROOT and the walk: the index's sidecar is
    # swapped for a FIFO, so `kb index` blocks reading it until this test writes it back, and the
    # root is deleted in that gap.
    sidecar = settings.index_dir / "kb-index.json"
    content = sidecar.read_text()
    sidecar.unlink()
    os.mkfifo(sidecar)
    run = subprocess.Popen(
        [sys.executable, "-m", "kb", "index", str(settings.root), "--index-dir", str(settings.index_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fd = open_fifo_writer_once_read(sidecar, run)
        shutil.rmtree(settings.root)
        with os.fdopen(fd, "w") as writer:
            writer.write(content)
        _, stderr = run.communicate(timeout=TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    sidecar.unlink()
    sidecar.write_text(content)
    assert run.returncode == 2, stderr
    assert str(settings.root.resolve()) in stderr
    assert "does not exist" in stderr
    assert "removed" not in stderr
    assert json.loads(content)["root"] == str(settings.root.resolve())
    assert SearchIndex.open(settings.index_dir).document_paths() == ["a.md", "sub/b.md"]


def open_fifo_writer_once_read(fifo: Path, process: subprocess.Popen[str]) -> int:
    """Open the FIFO's writing end as soon as `process` opens it for reading (a non-blocking open
    fails until a reader is there); a cross-process wait, so a bounded poll."""
    deadline = time.monotonic() + TIMEOUT
    pause = threading.Event()
    while time.monotonic() < deadline and process.poll() is None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            pause.wait(0.02)
            continue
        os.set_blocking(fd, True)
        return fd
    pytest.fail(f"`kb index` never read its sidecar (exit {process.poll()})")

"""The writer lock's holder record: who writes, never with what arguments."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kb.index import HOLDER_FILE, SearchIndex, pid_alive


def test_the_holder_record_names_the_command_but_never_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["kb", "serve", str(tmp_path), "--http", "8000", "--token", "s3cret"])
    (tmp_path / "docs").mkdir()
    index = SearchIndex.open(tmp_path / "idx", tmp_path / "docs")
    with index.batch(wait=0):
        text = (tmp_path / "idx" / HOLDER_FILE).read_text()
    assert "s3cret" not in text
    assert json.loads(text)["command"] == "kb serve"
    assert json.loads(text)["pid"] == os.getpid()
    assert not (tmp_path / "idx" / HOLDER_FILE).exists()


def test_a_process_we_may_not_signal_is_still_alive() -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(1)  # init: signalling it is refused to others, yet it exists
    assert not pid_alive(2**22 + 12345)  # above the kernel's pid limit

"""What a person sees in a terminal: `kb` run as a real process on a pseudo-terminal, whose output
is read back as the terminal receives it (escape sequences included)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from test_cli import kb

TIMESTAMP = r"\d\d:\d\d:\d\d"


def in_terminal(*args: str | Path, cwd: Path) -> tuple[int, str]:
    """`kb ARGS` with stdout and stderr on a pseudo-terminal; its exit code and all it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kb", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_search_in_a_terminal_shows_matched_words_in_bold_not_asterisks(
    sample_docs: Path, tmp_path: Path
) -> None:
    assert kb("index", sample_docs, "--index-dir", tmp_path / "idx").exit_code == 0
    code, shown = in_terminal("search", "install linux", "--index-dir", tmp_path / "idx", cwd=tmp_path)
    assert code == 0
    assert re.search(r"\x1b\[1m[Ii]nstall\x1b\[0m", shown), shown
    assert "**" not in shown
    assert "guide/install.md#linux" in shown


def test_search_into_a_pipe_is_plain_text_as_before(sample_docs: Path, tmp_path: Path) -> None:
    assert kb("index", sample_docs, "--index-dir", tmp_path / "idx").exit_code == 0
    run = kb("search", "install linux", "--index-dir", tmp_path / "idx")
    assert "\x1b[" not in run.stdout and "**install**" in run.stdout.lower()


def test_the_progress_bar_gives_way_to_log_lines_and_ends_before_the_last_one(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for n in range(40):
        (root / f"note{n}.md").write_text(f"# Note {n}\n\nkangaroo {n}\n")
    (root / "binary.md").write_bytes(b"\x00\x01\x02\x03")  # logged as not indexed, mid-sync
    code, shown = in_terminal("index", root, "--index-dir", tmp_path / "idx", cwd=tmp_path)
    assert code == 1
    assert "indexing" in shown  # the bar was drawn
    warning = re.search(rf"{TIMESTAMP} WARNING kb.ingest: not indexed: binary.md", shown)
    assert warning is not None
    # The line the warning is written on was cleared of the bar first (or is a fresh line).
    before = shown[: warning.start()]
    assert before.endswith(("\x1b[2K", "\n")), repr(before[-80:])
    closing = shown.index("INFO kb.ingest: sync of")
    assert shown.rfind("indexing") < closing, "the bar was drawn again after the closing log line"

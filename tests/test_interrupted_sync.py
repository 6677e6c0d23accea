"""A sync stopped at any moment keeps what it did: it commits every `commit_every_seconds` however few
files that is, the next run reads only the rest, and the segments a killed run abandons do not pile up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_crash_safety import FILES, assert_consistent, make_corpus

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync

COMMIT_EVERY_SECONDS = 0.2  # well inside one run of FILES files, which takes seconds
DEADLINE = 120.0


def committed_records(index_dir: Path) -> int:
    """Live records in the last commit, from Tantivy's meta.json (written atomically), without opening it."""
    try:
        meta = json.loads((index_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(s["max_doc"] - (s.get("deletes") or {}).get("num_deleted_docs", 0) for s in meta["segments"])


def unreferenced_segments(index_dir: Path) -> set[str]:
    """Ids of segment files on disk that the last commit does not name (abandoned by a killed run)."""
    meta = json.loads((index_dir / "meta.json").read_text())
    named = {s["segment_id"].replace("-", "") for s in meta["segments"]}
    on_disk = {f.name[:32] for f in index_dir.iterdir() if len(f.name) > 33 and f.name[32] == "."}
    return on_disk - named


def folder_bytes(index_dir: Path) -> int:
    return sum(f.stat().st_size for f in index_dir.iterdir() if f.is_file())


def kb_index(root: Path, index_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--jobs", "1"],
            env={**os.environ, "KB_COMMIT_EVERY_SECONDS": str(COMMIT_EVERY_SECONDS)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def test_a_sync_commits_every_commit_every_seconds_however_few_files_it_wrote(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for n in range(5):
        (root / f"n{n}.md").write_text(f"# Note {n}\n\nword{n}\n")
    settings = Settings(root=root, index_dir=tmp_path / "idx", commit_every_seconds=1e-9)
    index = SearchIndex.open(settings.index_dir, root)
    seen: list[int] = []
    sync(settings, index, progress=lambda done, total: seen.append(len(index.manifest())))
    assert seen == [0, 1, 2, 3, 4]  # each file's predecessors were committed before it was written
    assert index.stats().documents == 5


def test_killed_runs_keep_their_commits_and_the_next_run_reads_only_the_rest(tmp_path: Path) -> None:
    root, index_dir, log = tmp_path / "docs", tmp_path / "idx", tmp_path / "kb.log"
    make_corpus(root)
    records, sizes = [0], []
    for stop in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
        run = kb_index(root, index_dir, log)
        deadline = time.monotonic() + DEADLINE
        # Polling another process's commits, bounded: there is no event to wait on across processes.
        while committed_records(index_dir) <= records[-1] and run.poll() is None:
            assert time.monotonic() < deadline, f"no commit within {DEADLINE}s: {log.read_text()[-2000:]}"
            time.sleep(0.01)
        run.send_signal(stop)
        assert run.wait(timeout=30) == -stop, "the run should be stopped mid-way, not finish"
        records.append(committed_records(index_dir))
        sizes.append(folder_bytes(index_dir))
        assert len(unreferenced_segments(index_dir)) <= 2, "abandoned segments pile up"
    assert records == sorted(set(records)), f"each run kept more: {records}"

    partial = SearchIndex.open(index_dir, root)
    assert_consistent(partial)
    kept = partial.stats().documents
    assert 0 < kept < FILES
    partial.close()

    rerun = subprocess.run(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert (report["unchanged"], report["added"]) == (kept, FILES - kept), "only the rest is read"
    final = SearchIndex.open(index_dir)
    assert final.stats().documents == FILES
    assert_consistent(final)
    assert unreferenced_segments(index_dir) == set()
    fresh = tmp_path / "fresh"
    assert (
        subprocess.run(
            [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(fresh)], capture_output=True
        ).returncode
        == 0
    )
    assert folder_bytes(index_dir) < 1.25 * folder_bytes(fresh), f"interrupted runs left waste: {sizes}"

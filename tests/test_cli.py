"""The `kb` command as a user (or a cron job) runs it: real processes, exit codes, JSON on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kb.index import SearchIndex


def kb(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kb", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_index_json_is_one_object_with_the_contract_keys(sample_docs: Path, tmp_path: Path) -> None:
    run = kb("index", sample_docs, "--index-dir", tmp_path / "idx", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report) == {
        "root",
        "index_dir",
        "added",
        "updated",
        "removed",
        "unchanged",
        "failed",
        "skipped",
        "seconds",
    }
    assert report["added"] == len([p for p in sample_docs.rglob("*") if p.is_file()])
    assert report["failed"] == [] and report["skipped"] == []
    again = json.loads(kb("index", sample_docs, "--index-dir", tmp_path / "idx", "--json").stdout)
    assert (again["added"], again["unchanged"]) == (0, report["added"])


def test_index_exits_1_when_some_files_failed_and_still_commits_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "ok.md").write_text("# Fine\n\nIndexed anyway.\n")
    (root / "bad.pdf").write_bytes(b"%PDF-1.7 garbage")
    run = kb("index", root, "--index-dir", tmp_path / "idx", "--json")
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert [f["path"] for f in report["failed"]] == ["bad.pdf"]
    assert report["failed"][0]["error"]
    assert report["added"] == 1


def test_index_exits_2_with_one_line_naming_rebuild_when_the_root_differs(
    sample_docs: Path, tmp_path: Path
) -> None:
    assert kb("index", sample_docs, "--index-dir", tmp_path / "idx").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    run = kb("index", other, "--index-dir", tmp_path / "idx")
    assert run.returncode == 2
    assert "--rebuild" in run.stderr
    assert "Traceback" not in run.stderr
    assert kb("index", other, "--index-dir", tmp_path / "idx", "--rebuild").returncode == 0


def test_index_exits_2_for_a_root_that_does_not_exist(tmp_path: Path) -> None:
    run = kb("index", tmp_path / "missing", "--index-dir", tmp_path / "idx")
    assert run.returncode == 2
    assert "does not exist" in run.stderr


def test_index_exits_3_naming_the_holder_when_the_lock_stays_busy(sample_docs: Path, tmp_path: Path) -> None:
    index = SearchIndex.open(tmp_path / "idx", sample_docs)
    with index.batch(wait=0):
        run = kb("index", sample_docs, "--index-dir", tmp_path / "idx", "--wait", "0.3")
    assert run.returncode == 3
    assert f"pid {os.getpid()}" in run.stderr


def test_index_dir_comes_from_the_environment_when_no_flag_is_given(
    sample_docs: Path, tmp_path: Path
) -> None:
    run = kb("index", sample_docs, "--json", env={"KB_INDEX_DIR": str(tmp_path / "from-env")})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["index_dir"] == str((tmp_path / "from-env").resolve())


def test_search_json_lists_results_with_the_contract_fields(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb(
        "search", "how do I install kb on Linux?", "--index-dir", tmp_path / "idx", "--json", "--limit", "3"
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["query"] == "how do I install kb on Linux?"
    assert 1 <= len(data["results"]) <= 3
    top = data["results"][0]
    assert {"id", "path", "title", "heading", "page", "score", "snippet", "url"} <= set(top)
    assert top["path"] == "guide/install.md"
    assert top["id"].startswith("guide/install.md#")
    assert "**" in top["snippet"]
    assert top["url"].startswith("file://")


def test_search_finds_pdf_pages_by_page_number(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    data = json.loads(
        kb("search", "manual", "--index-dir", tmp_path / "idx", "--json", "--limit", "50").stdout
    )
    pdf_hits = [r for r in data["results"] if r["path"].endswith(".pdf")]
    assert pdf_hits and isinstance(pdf_hits[0]["page"], int) and pdf_hits[0]["page"] >= 1


def test_search_without_json_prints_a_readable_list(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb("search", "install linux", "--index-dir", tmp_path / "idx")
    assert run.returncode == 0
    assert run.stdout.startswith("1. ")
    assert "guide/install.md#" in run.stdout


def test_search_without_an_index_says_to_run_kb_index(tmp_path: Path) -> None:
    run = kb("search", "anything", "--index-dir", tmp_path / "none")
    assert run.returncode == 2
    assert "kb index" in run.stderr
    assert "Traceback" not in run.stderr


def test_status_json_has_the_contract_keys(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb("status", "--index-dir", tmp_path / "idx", "--json")
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    assert set(status) >= {
        "root",
        "index_dir",
        "documents",
        "sections",
        "size_bytes",
        "last_indexed",
        "schema_version",
    }
    assert status["root"] == str(sample_docs.resolve())
    assert status["documents"] >= 7


@pytest.mark.parametrize("command", ["index", "search", "status", "serve"])
def test_every_command_has_help(command: str) -> None:
    run = kb(command, "--help")
    assert run.returncode == 0
    assert "--index-dir" in run.stdout


def test_search_with_an_empty_query_is_a_usage_error(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb("search", "  ", "--index-dir", tmp_path / "idx")
    assert run.returncode == 2
    assert "empty" in run.stderr and "Traceback" not in run.stderr

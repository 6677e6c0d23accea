"""The `kb` command as a user (or a cron job) runs it: exit codes, JSON on stdout, messages on stderr.

Run in this process through click's CliRunner; a real process only where one is the point (another
process holding the lock, `main()`'s last line of defence).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kb.cli import _debug_requested, cli
from kb.index import SearchIndex


def kb(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """`kb ARGS` in this process, with `env` added to the environment; the root logger is restored
    after (the command points it at the runner's stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(cli, [str(arg) for arg in args], env=env, catch_exceptions=False)
    finally:
        root.handlers[:], root.level = handlers, level


def kb_process(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`kb ARGS` as a separate process, the way a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kb", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_index_json_is_one_object_with_the_contract_keys(sample_docs: Path, tmp_path: Path) -> None:
    run = kb("index", sample_docs, "--index-dir", tmp_path / "idx", "--json")
    assert run.exit_code == 0, run.stderr
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
        "unsupported",  # added by issue 14: files of kinds kb does not read, by extension
        "seconds",
        "embedded",  # added by issue 13: passages given a vector, the time it took, and the share
        "embedding_seconds",  # of all passages with one (null: semantic search off, as in the suite)
        "semantic_coverage",
    }
    assert report["added"] == len([p for p in sample_docs.rglob("*") if p.is_file()])
    assert report["failed"] == [] and report["skipped"] == [] and report["unsupported"] == {}
    again = json.loads(kb("index", sample_docs, "--index-dir", tmp_path / "idx", "--json").stdout)
    assert (again["added"], again["unchanged"]) == (0, report["added"])


def test_index_exits_1_when_some_files_failed_and_still_commits_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "ok.md").write_text("# Fine\n\nIndexed anyway.\n")
    (root / "bad.pdf").write_bytes(b"%PDF-1.7 garbage")
    run = kb("index", root, "--index-dir", tmp_path / "idx", "--json")
    assert run.exit_code == 1
    report = json.loads(run.stdout)
    assert [f["path"] for f in report["failed"]] == ["bad.pdf"]
    assert report["failed"][0]["error"]
    assert report["added"] == 1


def test_index_exits_2_with_one_line_naming_rebuild_when_the_root_differs(
    sample_docs: Path, tmp_path: Path
) -> None:
    assert kb("index", sample_docs, "--index-dir", tmp_path / "idx").exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    run = kb("index", other, "--index-dir", tmp_path / "idx")
    assert run.exit_code == 2
    assert "--rebuild" in run.stderr
    assert "Traceback" not in run.stderr
    assert kb("index", other, "--index-dir", tmp_path / "idx", "--rebuild").exit_code == 0


def test_index_exits_2_for_a_root_that_does_not_exist(tmp_path: Path) -> None:
    run = kb("index", tmp_path / "missing", "--index-dir", tmp_path / "idx")
    assert run.exit_code == 2
    assert "does not exist" in run.stderr


def test_index_exits_3_naming_the_holder_when_the_lock_stays_busy(sample_docs: Path, tmp_path: Path) -> None:
    index = SearchIndex.open(tmp_path / "idx", sample_docs)
    with index.batch(wait=0):
        run = kb_process("index", sample_docs, "--index-dir", tmp_path / "idx", "--wait", "0.3")
    assert run.returncode == 3
    assert f"pid {os.getpid()}" in run.stderr


def test_index_dir_comes_from_the_environment_when_no_flag_is_given(
    sample_docs: Path, tmp_path: Path
) -> None:
    run = kb("index", sample_docs, "--json", env={"KB_INDEX_DIR": str(tmp_path / "from-env")})
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["index_dir"] == str((tmp_path / "from-env").resolve())


def test_search_json_lists_results_with_the_contract_fields(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb(
        "search", "how do I install kb on Linux?", "--index-dir", tmp_path / "idx", "--json", "--limit", "3"
    )
    assert run.exit_code == 0, run.stderr
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
    assert run.exit_code == 0
    assert run.stdout.startswith("1. ")
    assert "guide/install.md#" in run.stdout


def test_search_without_an_index_says_to_run_kb_index(tmp_path: Path) -> None:
    run = kb("search", "anything", "--index-dir", tmp_path / "none")
    assert run.exit_code == 2
    assert "kb index" in run.stderr
    assert "Traceback" not in run.stderr


def test_status_json_has_the_contract_keys(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb("status", "--index-dir", tmp_path / "idx", "--json")
    assert run.exit_code == 0, run.stderr
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
    assert run.exit_code == 0
    assert "--index-dir" in run.stdout


def test_search_with_an_empty_query_is_a_usage_error(sample_docs: Path, tmp_path: Path) -> None:
    kb("index", sample_docs, "--index-dir", tmp_path / "idx")
    run = kb("search", "  ", "--index-dir", tmp_path / "idx")
    assert run.exit_code == 2
    assert "empty" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        (["--jobs", "65"], {}),
        ([], {"KB_JOBS": "65"}),
        (["--max-file-mb", "0"], {}),
        ([], {"KB_MAX_FILE_MB": "0"}),
        ([], {"KB_MAX_FILE_BYTES": "0"}),
    ],
)
def test_a_setting_has_the_same_bounds_as_a_flag_and_in_the_environment(
    sample_docs: Path, tmp_path: Path, flag: list[str], env: dict[str, str]
) -> None:
    run = kb("index", sample_docs, "--index-dir", tmp_path / "idx", *flag, env=env)
    assert run.exit_code == 2
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "idx").exists()


def test_the_size_cap_in_megabytes_comes_from_the_flag_or_the_environment(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "big.md").write_text("# Big\n\n" + "word " * 300_000)  # about 1.5 MB
    (root / "small.md").write_text("# Small\n\nshort\n")
    by_env = json.loads(
        kb("index", root, "--index-dir", tmp_path / "a", "--json", env={"KB_MAX_FILE_MB": "1"}).stdout
    )
    by_flag = json.loads(
        kb("index", root, "--index-dir", tmp_path / "b", "--json", "--max-file-mb", "1").stdout
    )
    flag_wins = json.loads(
        kb(
            "index",
            root,
            "--index-dir",
            tmp_path / "c",
            "--json",
            "--max-file-mb",
            "5",
            env={"KB_MAX_FILE_MB": "1"},
        ).stdout
    )
    assert [s["path"] for s in by_env["skipped"]] == [s["path"] for s in by_flag["skipped"]] == ["big.md"]
    assert flag_wins["skipped"] == [] and flag_wins["added"] == 2


def test_debug_is_asked_for_by_the_flag_or_by_kb_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KB_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["kb", "status"])
    assert not _debug_requested()
    monkeypatch.setenv("KB_DEBUG", "1")
    assert _debug_requested()
    monkeypatch.setenv("KB_DEBUG", "0")
    monkeypatch.setattr(sys, "argv", ["kb", "--debug", "status"])
    assert _debug_requested()

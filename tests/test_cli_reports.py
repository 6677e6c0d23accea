"""What `kb index` tells a person about the files it did not index: kinds it does not read, and
what `skipped` holds (and does not)."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import kb


def office_folder(tmp_path: Path) -> Path:
    root = tmp_path / "office"
    (root / "decks").mkdir(parents=True)
    for name in ("plan.xlsx", "budget.XLSX", "notes.xlsx", "decks/q3.key", "LICENSE"):
        (root / name).write_bytes(b"PK\x03\x04 not read")
    (root / ".git").mkdir()
    (root / ".git" / "index.xlsx").write_bytes(b"hidden")
    (root / ".gitignore").write_text("drafts/\n")
    (root / "drafts").mkdir()
    (root / "drafts" / "old.xlsx").write_bytes(b"ignored")
    return root


def test_index_of_a_folder_with_nothing_it_reads_says_what_it_saw(tmp_path: Path) -> None:
    run = kb("index", office_folder(tmp_path), "--index-dir", tmp_path / "idx")
    assert run.exit_code == 0
    line = run.stderr.strip().splitlines()[-1]
    assert "no documents in" in line and "saw 5 files" in line
    assert "3 .xlsx, 1 (no extension), 1 .key" in line
    assert ".md .markdown" in line  # what it would read


def test_index_json_counts_unsupported_files_by_extension_and_not_hidden_or_ignored_ones(
    tmp_path: Path,
) -> None:
    run = kb("index", office_folder(tmp_path), "--index-dir", tmp_path / "idx", "--json")
    report = json.loads(run.stdout)
    assert report["unsupported"] == {"": 1, ".xlsx": 3, ".key": 1}
    assert report["added"] == 0 and report["skipped"] == []  # hidden and ignored are passed over quietly


def test_a_folder_with_documents_says_only_how_many_files_of_other_kinds_it_left(tmp_path: Path) -> None:
    root = office_folder(tmp_path)
    (root / "readme.md").write_text("# Read me\n")
    run = kb("index", root, "--index-dir", tmp_path / "idx")
    assert "1 added" in run.stderr and "5 of other kinds not read" in run.stderr
    assert "no documents" not in run.stderr


def test_skipped_lists_links_and_oversized_files_but_not_hidden_or_ignored_ones(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "ok.md").write_text("# Fine\n")
    (root / "big.md").write_text("x" * 2_000_000)
    (root / "link.md").symlink_to(root / "ok.md")
    (root / ".hidden.md").write_text("# Hidden\n")
    (root / ".kbignore").write_text("private.md\n")
    (root / "private.md").write_text("# Private\n")
    run = kb("index", root, "--index-dir", tmp_path / "idx", "--max-file-mb", "1", "--json")
    skipped = {entry["path"]: entry["reason"] for entry in json.loads(run.stdout)["skipped"]}
    assert set(skipped) == {"big.md", "link.md"}
    assert "size cap" in skipped["big.md"] and "symlink" in skipped["link.md"]

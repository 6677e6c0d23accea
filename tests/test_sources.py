"""Walking a root and confining paths to it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kb.errors import PathRefusedError
from kb.sources import confine, walk


def make(root: Path, rel: str, text: str = "hello") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def walked(root: Path, **kw: int) -> list[str]:
    return [f.path for f in walk(root, max_file_bytes=kw.get("cap", 1_000_000)).files]


def test_walk_lists_supported_files_with_posix_paths_in_order(tmp_path: Path) -> None:
    make(tmp_path, "b.md")
    make(tmp_path, "a/c.txt")
    make(tmp_path, "a/d.pdf")
    make(tmp_path, "a/e.htm")
    make(tmp_path, "image.png")
    make(tmp_path, "script.py")
    assert walked(tmp_path) == ["a/c.txt", "a/d.pdf", "a/e.htm", "b.md"]


def test_walk_skips_hidden_files_and_folders_quietly(tmp_path: Path) -> None:
    make(tmp_path, ".git/notes.md")
    make(tmp_path, ".hidden.md")
    make(tmp_path, "docs/.draft/x.md")
    make(tmp_path, "docs/visible.md")
    result = walk(tmp_path, max_file_bytes=1000)
    assert [f.path for f in result.files] == ["docs/visible.md"]
    assert result.skipped == []


def test_walk_honours_gitignore_and_kbignore_including_nested_ones(tmp_path: Path) -> None:
    make(tmp_path, ".gitignore", "build/\n*.log\n")
    make(tmp_path, ".kbignore", "drafts/\n")
    make(tmp_path, "build/out.md")
    make(tmp_path, "server.log")
    make(tmp_path, "drafts/wip.md")
    make(tmp_path, "notes/.gitignore", "secret.md\n")
    make(tmp_path, "notes/secret.md")
    make(tmp_path, "notes/public.md")
    make(tmp_path, "secret.md")
    assert walked(tmp_path) == ["notes/public.md", "secret.md"]


def test_walk_reports_files_over_the_size_cap(tmp_path: Path) -> None:
    make(tmp_path, "big.txt", "x" * 2000)
    make(tmp_path, "small.txt", "x")
    result = walk(tmp_path, max_file_bytes=1000)
    assert [f.path for f in result.files] == ["small.txt"]
    assert len(result.skipped) == 1
    assert result.skipped[0][0] == "big.txt"
    assert "size cap" in result.skipped[0][1]


def test_walk_reports_a_symlink_out_of_the_root_and_never_follows_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make(outside, "secret.md", "top secret")
    root = tmp_path / "root"
    make(root, "ok.md")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    result = walk(root, max_file_bytes=1_000_000)
    assert [f.path for f in result.files] == ["ok.md"]
    assert sorted(p for p, _ in result.skipped) == ["linked", "passwd.txt"]
    assert all("outside the root" in reason for _, reason in result.skipped)


def test_walk_survives_symlink_loops(tmp_path: Path) -> None:
    make(tmp_path, "a/doc.md")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "self.md").symlink_to(tmp_path / "self.md")
    result = walk(tmp_path, max_file_bytes=1000)
    assert [f.path for f in result.files] == ["a/doc.md"]
    assert ("self.md", "broken symlink or symlink loop") in result.skipped


def test_walk_reports_a_fifo_as_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    result = walk(tmp_path, max_file_bytes=1000)
    assert result.files == []
    assert result.skipped == [("pipe.txt", "not a regular file")]


def test_walk_leaves_out_the_index_folder_inside_the_root(tmp_path: Path) -> None:
    make(tmp_path, "doc.md")
    make(tmp_path, "index/README.md")
    result = walk(tmp_path, max_file_bytes=1000, exclude=tmp_path / "index")
    assert [f.path for f in result.files] == ["doc.md"]


def test_confine_returns_the_resolved_file_inside_the_root(tmp_path: Path) -> None:
    target = make(tmp_path, "guide/install.md")
    assert confine(tmp_path, "guide/install.md") == target.resolve()


@pytest.mark.parametrize(
    "probe",
    [
        "../etc/passwd",
        "guide/../../x.md",
        "%2e%2e/etc/passwd",
        "%252e%252e/etc/passwd",
        "/etc/passwd",
        "file:///etc/passwd",
        "guide\\install.md",
        "a\x00b.md",
        "C:/x.md",
        ".git/config",
        "guide/.secret.md",
        "",
    ],
)
def test_confine_refuses_paths_that_could_escape_or_reveal(tmp_path: Path, probe: str) -> None:
    make(tmp_path, "guide/install.md")
    with pytest.raises(PathRefusedError):
        confine(tmp_path, probe)


def test_confine_refuses_a_symlink_that_points_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "escape.md").symlink_to("/etc/passwd")
    with pytest.raises(PathRefusedError, match="outside the root"):
        confine(tmp_path, "escape.md")


def test_confine_refuses_ignored_files_named_exactly(tmp_path: Path) -> None:
    make(tmp_path, ".kbignore", "private/\n")
    make(tmp_path, "private/diary.md")
    with pytest.raises(PathRefusedError, match="ignored"):
        confine(tmp_path, "private/diary.md")


def test_confine_refuses_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PathRefusedError, match="no such file"):
        confine(tmp_path, "nothing.md")

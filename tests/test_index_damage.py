"""A damaged index is named as such, with the command that fixes it, and `kb index --rebuild` fixes it;
a folder kb did not make is never deleted."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kb.cli import cli
from kb.index import SearchIndex

Damage = Callable[[Path], None]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # The CLI points the root logger at its own stderr; later tests must get theirs back.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def build(tmp_path: Path) -> tuple[Path, Path]:
    root, index_dir = tmp_path / "docs", tmp_path / "idx"
    root.mkdir()
    for n in range(3):
        (root / f"n{n}.md").write_text(f"# Note {n}\n\nplums{n} and apricots.\n")
    result = run("index", root, "--index-dir", index_dir)
    assert result.exit_code == 0, result.output
    return root, index_dir


def segment_file(index_dir: Path, ext: str) -> Path:
    [found] = index_dir.glob(f"*.{ext}")
    return found


def garbage_meta(index_dir: Path) -> None:
    (index_dir / "meta.json").write_text("garbage\n")


def deleted_meta(index_dir: Path) -> None:
    (index_dir / "meta.json").unlink()


def truncated_segment(index_dir: Path) -> None:
    store = segment_file(index_dir, "store")
    store.write_bytes(store.read_bytes()[:10])


def deleted_segment(index_dir: Path) -> None:
    segment_file(index_dir, "idx").unlink()


def garbage_managed(index_dir: Path) -> None:
    (index_dir / ".managed.json").write_text("junk")


def garbage_sidecar(index_dir: Path) -> None:
    (index_dir / "kb-index.json").write_text("{garbage")


def sidecar_without_root(index_dir: Path) -> None:
    (index_dir / "kb-index.json").write_text("[]")


def lost_sidecar_beside_kb_files(index_dir: Path) -> None:
    # A server killed while running leaves its status file; the sidecar is then lost.
    (index_dir / "kb-server.json").write_text(json.dumps({"pid": 0}))
    (index_dir / "kb-index.json").unlink()


DAMAGE: list[Damage] = [
    garbage_meta,
    deleted_meta,
    truncated_segment,
    deleted_segment,
    garbage_managed,
    garbage_sidecar,
    sidecar_without_root,
    lost_sidecar_beside_kb_files,
]


def assert_damaged_message(result: Result, index_dir: Path) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"the index at {index_dir.resolve()} is damaged" in lines[0]
    assert "--rebuild" in lines[0] and "kb index " in lines[0]
    assert "unexpected" not in lines[0]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_every_command_but_rebuild_says_the_index_is_damaged_and_how_to_rebuild(
    tmp_path: Path, damage: Damage
) -> None:
    root, index_dir = build(tmp_path)
    damage(index_dir)
    before = sorted(p.name for p in index_dir.iterdir())
    for args in (
        ["index", root, "--index-dir", index_dir],
        ["search", "plums0", "--index-dir", index_dir],
        ["status", "--index-dir", index_dir],
    ):
        assert_damaged_message(run(*args), index_dir)
    assert sorted(p.name for p in index_dir.iterdir()) == before, "nothing is repaired or removed unasked"


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_rebuild_wipes_a_damaged_index_and_indexes_everything_again(tmp_path: Path, damage: Damage) -> None:
    root, index_dir = build(tmp_path)
    (index_dir / "README.md").write_text("derived data")
    damage(index_dir)
    result = run("index", root, "--index-dir", index_dir, "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 3
    found = run("search", "plums2", "--index-dir", index_dir, "--json")
    assert found.exit_code == 0, found.output
    assert [r["path"] for r in json.loads(found.stdout)["results"]] == ["n2.md"]
    assert (index_dir / "README.md").read_text() == "derived data"


def test_rebuild_finds_damage_inside_a_segment_file_that_opening_does_not_read(tmp_path: Path) -> None:
    root, index_dir = build(tmp_path)
    terms = segment_file(index_dir, "term")
    data = bytearray(terms.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = b"\xff" * third
    terms.write_bytes(bytes(data))
    result = run("index", root, "--index-dir", index_dir, "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 3, "the damaged segments were wiped, not reused"
    assert SearchIndex.open(index_dir).search("plums1").results[0].path == "n1.md"


def test_rebuild_never_deletes_a_tantivy_index_that_kb_did_not_make(tmp_path: Path) -> None:
    root, index_dir = build(tmp_path)
    (index_dir / "kb-index.json").unlink()  # now just someone's Tantivy index
    before = {p.name: p.read_bytes() for p in index_dir.iterdir()}
    for rebuild in ([], ["--rebuild"]):
        result = run("index", root, "--index-dir", index_dir, *rebuild)
        assert result.exit_code == 2
        assert "not empty and holds no kb index" in result.output
    assert {p.name: p.read_bytes() for p in index_dir.iterdir()} == before


def test_rebuild_keeps_files_kb_did_not_write_and_says_so(tmp_path: Path) -> None:
    root, index_dir = build(tmp_path)
    garbage_sidecar(index_dir)
    (index_dir / "precious.txt").write_text("keep me")
    before = sorted(p.name for p in index_dir.iterdir())
    result = run("index", root, "--index-dir", index_dir, "--rebuild")
    assert result.exit_code == 2
    assert "precious.txt" in result.output and "did not write" in result.output
    assert sorted(p.name for p in index_dir.iterdir()) == before
    assert (index_dir / "precious.txt").read_text() == "keep me"


def test_a_healthy_index_keeps_its_files_on_rebuild(tmp_path: Path) -> None:
    root, index_dir = build(tmp_path)
    result = run("index", root, "--index-dir", index_dir, "--rebuild", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 3, "re-read in place, not wiped"


def test_serve_says_the_index_is_damaged_before_any_protocol_traffic(tmp_path: Path) -> None:
    root, index_dir = build(tmp_path)
    garbage_meta(index_dir)
    # stdin stays open: a server that ignored the damage would keep serving, not exit.
    served = subprocess.Popen(
        [sys.executable, "-m", "kb", "serve", str(root), "--index-dir", str(index_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        served.wait(timeout=10)
    finally:
        served.kill()
        out, err = served.communicate(timeout=10)
    assert served.returncode == 2, err
    assert "is damaged" in err and "--rebuild" in err
    assert out == ""

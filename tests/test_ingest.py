"""Incremental sync: exact counts for every kind of change, and hostile files that never stop a run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pypdf import PdfWriter

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync, sync_paths
from kb.models import DocId, SyncReport


class Corpus:
    """A root folder and its index, synced on demand."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.root = tmp_path / "docs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(root=self.root, index_dir=tmp_path / "idx", **settings)
        self.index = SearchIndex.open(self.settings.index_dir, self.root)

    def write(self, rel: str, data: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path

    def sync(self, **kw: bool) -> SyncReport:
        return sync(self.settings, self.index, **kw)


def counts(report: SyncReport) -> tuple[int, int, int, int]:
    return report.added, report.updated, report.removed, report.unchanged


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    c = Corpus(tmp_path)
    c.write("a.md", "# Alpha\n\nFirst note about apples.\n")
    c.write("sub/b.txt", "Bananas are yellow.\n")
    return c


def test_first_sync_adds_every_document(corpus: Corpus) -> None:
    report = corpus.sync()
    assert counts(report) == (2, 0, 0, 0)
    assert report.failed == [] and report.skipped == []
    assert corpus.index.document_paths() == ["a.md", "sub/b.txt"]


def test_a_second_sync_without_changes_reads_nothing(corpus: Corpus) -> None:
    corpus.sync()
    (corpus.root / "a.md").chmod(0)  # unreadable: any attempt to read it would fail the file
    try:
        report = corpus.sync()
    finally:
        (corpus.root / "a.md").chmod(0o644)
    assert counts(report) == (0, 0, 0, 2)
    assert report.failed == []


def test_an_edit_updates_only_that_document(corpus: Corpus) -> None:
    corpus.sync()
    path = corpus.write("a.md", "# Alpha\n\nNow about apricots instead.\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    assert counts(corpus.sync()) == (0, 1, 0, 1)
    assert [h.path for h in corpus.index.search("apricots").results] == ["a.md"]
    assert corpus.index.search("apples").results == []


def test_a_touch_without_change_rewrites_only_the_manifest(corpus: Corpus) -> None:
    corpus.sync()
    path = corpus.root / "a.md"
    new_mtime = path.stat().st_mtime_ns + 7_000_000_000
    os.utime(path, ns=(new_mtime, new_mtime))
    assert counts(corpus.sync()) == (0, 0, 0, 2)
    assert corpus.index.manifest()["a.md"].mtime_ns == new_mtime
    # The manifest now matches, so the next run does not even hash it.
    assert counts(corpus.sync()) == (0, 0, 0, 2)
    assert len(corpus.index.search("apples").results) == 1


def test_a_deleted_file_leaves_the_index(corpus: Corpus) -> None:
    corpus.sync()
    (corpus.root / "sub" / "b.txt").unlink()
    assert counts(corpus.sync()) == (0, 0, 1, 1)
    assert corpus.index.search("bananas").results == []
    assert corpus.index.document_paths() == ["a.md"]


def test_a_rename_is_one_removal_and_one_addition(corpus: Corpus) -> None:
    corpus.sync()
    (corpus.root / "sub" / "b.txt").rename(corpus.root / "c.txt")
    assert counts(corpus.sync()) == (1, 0, 1, 1)
    assert [h.path for h in corpus.index.search("bananas").results] == ["c.txt"]


def test_rebuild_rereads_every_file(corpus: Corpus) -> None:
    corpus.sync()
    assert counts(corpus.sync(rebuild=True)) == (0, 2, 0, 0)
    assert corpus.index.stats().documents == 2


def test_a_file_that_becomes_ignored_leaves_the_index(corpus: Corpus) -> None:
    corpus.sync()
    corpus.write(".kbignore", "sub/\n")
    assert counts(corpus.sync()) == (0, 0, 1, 1)


def test_parallel_extraction_gives_the_same_index_as_serial(tmp_path: Path) -> None:
    serial = Corpus(tmp_path / "one", jobs=1)
    parallel = Corpus(tmp_path / "two", jobs=2)
    for c in (serial, parallel):
        for n in range(40):
            c.write(f"d{n:02}.md", f"# Doc {n}\n\n" + f"word{n} filler text. " * 4000)
    assert counts(parallel.sync()) == counts(serial.sync()) == (40, 0, 0, 0)
    for c in (serial, parallel):
        assert [h.path for h in c.index.search("word17").results] == ["d17.md"]
    assert serial.index.stats().sections == parallel.index.stats().sections


def _mixed_tree(c: Corpus) -> None:
    """Small files of every text kind, some that cannot be indexed, and large ones, for the pool."""
    for n in range(300):
        tags = f"tags: [t{n % 7}, shared]\n" if n % 3 else ""
        body = f"# Note {n}\n\nword{n} text.\n\n## Part\n\n```\ncode {n}\n```\n"
        c.write(f"notes/{n // 50}/n{n:03}.md", f"---\ntitle: Note {n}\n{tags}---\n\n{body}")
    for n in range(40):
        c.write(f"plain/p{n:02}.txt", f"Paragraph {n} of plain text.\n\nAnother paragraph, word{n}.\n")
        c.write(
            f"pages/h{n:02}.html", f"<html><title>Page {n}</title><body><h1>Head</h1><p>word{n}</p></html>"
        )
    c.write("bad/binary.md", b"\x00\x01\x02 not text \xff" * 50)
    c.write("bad/empty.md", "")
    c.write("bad/latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"))
    for n in range(4):  # past the batch's byte limit: each goes alone, first
        c.write(f"big/b{n}.md", f"# Big {n}\n\n" + f"big{n} filler words here. " * 30_000)


def test_batches_of_small_files_give_the_same_index_as_one_file_per_message(tmp_path: Path) -> None:
    single = Corpus(tmp_path / "one", jobs=2, extract_batch=1)
    batched = Corpus(tmp_path / "many", jobs=2)
    assert batched.settings.extract_batch > 1
    reports = []
    for c in (single, batched):
        _mixed_tree(c)
        reports.append(c.sync())
    one, many = reports
    assert counts(many) == counts(one) == (386, 0, 0, 0)
    assert [(f.path, f.error) for f in many.failed] == [(f.path, f.error) for f in one.failed]
    assert [f.path for f in one.failed] == ["bad/binary.md"]
    paths = single.index.document_paths()
    assert batched.index.document_paths() == paths
    for path in paths:  # the two trees were written moments apart: all but the mtime must agree
        stored = [c.index.get(DocId(path)).model_dump(exclude={"mtime_ns"}) for c in (batched, single)]
        assert stored[0] == stored[1], path
    for word in ("word17", "shared", "big2", "code"):
        assert [h.id for h in batched.index.search(word, limit=50).results] == [
            h.id for h in single.index.search(word, limit=50).results
        ]


def _encrypted_pdf() -> bytes:
    import io

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_hostile_files_are_reported_and_the_rest_is_indexed(tmp_path: Path) -> None:
    corpus = Corpus(tmp_path, max_file_bytes=6_000_000)
    corpus.write("good.md", "# Good\n\nStill indexed despite the neighbours.\n")
    corpus.write("corrupt.pdf", b"%PDF-1.4\n1 0 obj<<>>\nthis is not a pdf at all")
    corpus.write(
        "truncated.pdf", (Path(__file__).parent.parent / "sample_docs" / "manual.pdf").read_bytes()[:400]
    )
    corpus.write("locked.pdf", _encrypted_pdf())
    corpus.write("binary.md", bytes(range(256)) * 40)
    corpus.write("latin1.txt", "Caf\xe9 cr\xe8me br\xfbl\xe9e".encode("latin-1"))
    corpus.write("empty.txt", b"")
    corpus.write("oneline.txt", "word " * 1_000_000)  # 5 MB on one line
    corpus.write("huge.log", b"x" * 6_000_001)
    os.mkfifo(corpus.root / "pipe.md")
    (corpus.root / "passwd.txt").symlink_to("/etc/passwd")

    report = corpus.sync()

    failed = {p.path: p.error for p in report.failed}
    skipped = {s.path: s.reason for s in report.skipped}
    assert set(failed) == {"corrupt.pdf", "truncated.pdf", "locked.pdf", "binary.md"}
    assert "encrypted" in failed["locked.pdf"]
    assert "binary" in failed["binary.md"]
    assert set(skipped) == {"huge.log", "pipe.md", "passwd.txt"}
    assert "size cap" in skipped["huge.log"]
    assert "outside the root" in skipped["passwd.txt"]
    assert report.added == 4
    assert set(corpus.index.document_paths()) == {"good.md", "latin1.txt", "empty.txt", "oneline.txt"}
    assert [h.path for h in corpus.index.search("crème").results] == ["latin1.txt"]
    assert [h.path for h in corpus.index.search("neighbours").results] == ["good.md"]
    # The next run retries the failures and changes nothing else.
    again = corpus.sync()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 4)
    assert {p.path for p in again.failed} == set(failed)


def test_sync_paths_touches_only_the_named_paths(corpus: Corpus) -> None:
    corpus.sync()
    corpus.write("new.md", "# New\n\nCherries.\n")
    (corpus.root / "a.md").unlink()
    corpus.write("sub/b.txt", "Bananas are now green and unripe.\n")
    report = sync_paths(corpus.settings, corpus.index, ["new.md", "a.md"])
    assert counts(report) == (1, 0, 1, 0)
    assert (report.added_paths, report.removed_paths) == (["new.md"], ["a.md"])
    assert corpus.index.search("unripe").results == []  # sub/b.txt was not named


def test_sync_paths_of_a_folder_walks_it_and_removes_what_vanished_below_it(corpus: Corpus) -> None:
    corpus.sync()
    corpus.write("sub/deeper/c.md", "# C\n\nCoconuts.\n")
    (corpus.root / "sub" / "b.txt").unlink()
    report = sync_paths(corpus.settings, corpus.index, ["sub"])
    assert (report.added_paths, report.removed_paths) == (["sub/deeper/c.md"], ["sub/b.txt"])
    (corpus.root / "sub" / "deeper" / "c.md").unlink()
    (corpus.root / "sub" / "deeper").rmdir()
    (corpus.root / "sub").rmdir()
    assert sync_paths(corpus.settings, corpus.index, ["sub"]).removed_paths == ["sub/deeper/c.md"]
    assert corpus.index.document_paths() == ["a.md"]


def test_sync_paths_ignores_hidden_and_ignored_paths(corpus: Corpus) -> None:
    corpus.sync()
    corpus.write(".kbignore", "private/\n")
    corpus.write("private/p.md", "# P\n\nSecret plums.\n")
    corpus.write(".hidden/h.md", "# H\n")
    report = sync_paths(corpus.settings, corpus.index, ["private/p.md", ".hidden/h.md", "private"])
    assert counts(report) == (0, 0, 0, 0)
    assert corpus.index.search("plums").results == []


def test_the_json_report_leaves_out_the_changed_path_lists(corpus: Corpus) -> None:
    report = corpus.sync()
    assert report.added_paths == ["a.md", "sub/b.txt"]
    assert "added_paths" not in report.model_dump()


def test_a_long_sync_commits_every_commit_every_files_so_readers_see_progress(tmp_path: Path) -> None:
    c = Corpus(tmp_path, commit_every_files=2)
    for n in range(5):
        c.write(f"n{n}.md", f"# Note {n}\n\nword{n}\n")
    committed: list[int] = []
    sync(c.settings, c.index, progress=lambda done, total: committed.append(c.index.stats().documents))
    assert committed == [0, 0, 2, 2, 4]  # seen after each file is written, before its batch commits
    assert c.index.stats().documents == 5


def test_a_large_file_is_extracted_within_the_time_budget_even_alone(tmp_path: Path) -> None:
    # A budget no extraction can meet shows where each file ran: a small file alone is extracted
    # inline (no budget), a large one in a worker process that is stopped when it overruns.
    c = Corpus(tmp_path, extract_timeout=0.001)
    c.write("small.md", "# Small\n\nfine\n")
    assert c.sync().added == 1
    c.write("large.md", "# Large\n\n" + "word " * 60_000)
    report = c.sync()
    assert report.added == 0 and [p.path for p in report.failed] == ["large.md"]
    assert "longer than" in report.failed[0].error

"""Confinement under races: paths swapped for links, FIFOs and hard links while kb indexes and
serves, and file names that cannot be served. Real threads swap real files for a couple of seconds
while another thread syncs a real index, and every poll looks for the outside file's marker."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kb import ingest
from kb.config import Settings
from kb.errors import PathRefusedError
from kb.index import SearchIndex
from kb.models import DocId
from kb.sources import WalkResult, check_path_syntax, confine, read_inside, walk

MARK = "zanzibarquokka"  # one word only the outside file holds: a search for it finds any leak
OUTSIDE_TEXT = f"# Outside\n\nThe {MARK} lives outside the root and must never be indexed.\n"
INSIDE_TEXT = "# Inside\n\nAn honest heron note.\n"
RACE_SECONDS = 2.0
logger = logging.getLogger(__name__)  # the counts: pytest --log-cli-level=INFO shows them
HANG_LIMIT = 20.0  # far beyond any sync of these few files; only a hang gets near it


@dataclass
class Tree:
    settings: Settings
    index: SearchIndex
    root: Path
    outside: Path

    def leaked(self) -> bool:
        """Whether anything the index holds, or would return, came from the outside file."""
        self.index.reload()
        if self.index.search(MARK).results:
            return True
        for path in self.index.document_paths():
            doc = self.index.get(DocId(path))
            if any(MARK in section.text for section in doc.sections) or MARK in doc.title:
                return True
        return False


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(OUTSIDE_TEXT)
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "secret.md").write_text(INSIDE_TEXT)
    (root / "keep.md").write_text("# Keep\n\nA note that stays.\n")
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, lock_wait=HANG_LIMIT)
    index = SearchIndex.open(settings.index_dir, root)
    ingest.sync(settings, index)
    yield Tree(settings, index, root, outside)
    index.close()


class Swapper(threading.Thread):
    """Calls `swap(n)` with n = 0, 1, 2, ... until stopped; counts the swaps it made."""

    def __init__(self, swap: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self._swap = swap
        self.stop = threading.Event()
        self.swaps = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._swap(self.swaps)
                self.swaps += 1
        except BaseException as exc:  # surfaced by the test, which joins this thread
            self.error = exc

    def finish(self) -> int:
        self.stop.set()
        self.join(timeout=HANG_LIMIT)
        assert not self.is_alive(), "the swapping thread did not stop"
        assert self.error is None, f"the swapping thread failed: {self.error!r}"
        return self.swaps


def swap_by_renames(live: Path, a: Path, b: Path) -> Callable[[int], None]:
    """A swap step that moves `a` and `b` in and out of `live` by rename, parking the other under a
    hidden name (which the walk passes over), so both objects always exist under one name or the
    other and `live` alternates between them."""

    def swap(n: int) -> None:
        if n % 2 == 0:
            os.replace(live, a)  # `a` was live; park it
            os.replace(b, live)
        else:
            os.replace(live, b)
            os.replace(a, live)

    return swap


@dataclass
class Race:
    swaps: int = 0
    polls: int = 0
    leaks: int = 0
    reads: int = 0
    read_leaks: int = 0


def race(tree: Tree, swapper: Swapper, poll: Callable[[int], None], read: Callable[[], str] | None) -> Race:
    """Swap for RACE_SECONDS while polling (syncing, then looking for the marker) and, when given,
    reading as the server does from a third thread; then sync once more at rest."""
    result = Race()
    stop_reading = threading.Event()

    def reader() -> None:
        assert read is not None
        while not stop_reading.is_set():
            text = read()
            result.reads += 1
            result.read_leaks += MARK in text

    reading = threading.Thread(target=reader, daemon=True)
    swapper.start()
    if read is not None:
        reading.start()
    deadline = time.monotonic() + RACE_SECONDS
    try:
        while time.monotonic() < deadline:
            poll(result.polls)
            result.polls += 1
            result.leaks += tree.leaked()
    finally:
        result.swaps = swapper.finish()
        stop_reading.set()
        if read is not None:
            reading.join(timeout=HANG_LIMIT)
    ingest.sync(tree.settings, tree.index)
    result.leaks += tree.leaked()
    logger.info("race: %s", result)
    return result


def served_text(tree: Tree, rel: str) -> Callable[[], str]:
    """What a fetch or resources/read of `rel` gets from the file, or '' when it is refused."""

    def read() -> str:
        try:
            file = confine(tree.root, rel, max_file_bytes=tree.settings.max_file_bytes)
            data, _ = read_inside(tree.root, file, tree.settings.max_file_bytes)
        except PathRefusedError:
            return ""
        return data.decode("utf-8", "replace")

    return read


# ---- races ---------------------------------------------------------------------------------


def test_a_folder_swapped_for_a_link_out_never_gets_outside_text_indexed_or_served(tree: Tree) -> None:
    root = tree.root
    (root / ".sub_link").symlink_to(tree.outside, target_is_directory=True)
    swapper = Swapper(swap_by_renames(root / "sub", root / ".sub_real", root / ".sub_link"))

    def poll(n: int) -> None:  # mostly the watcher's step, now and then a full sync
        if n % 4 == 3:
            ingest.sync(tree.settings, tree.index)
        else:
            ingest.sync_paths(tree.settings, tree.index, ["sub", "sub/secret.md"])

    result = race(tree, swapper, poll, served_text(tree, "sub/secret.md"))
    assert result.swaps > 100 and result.polls >= 10 and result.reads > 100
    assert (result.leaks, result.read_leaks) == (0, 0), result
    # At rest `sub` is one or the other; either way what is indexed is only inside text.
    assert tree.index.search("keep").results


def test_a_file_swapped_for_a_link_out_never_gets_outside_text_indexed_or_served(tree: Tree) -> None:
    root = tree.root
    (root / "flip.md").write_text(INSIDE_TEXT)
    (root / ".flip_link").symlink_to(tree.outside / "secret.md")
    swapper = Swapper(swap_by_renames(root / "flip.md", root / ".flip_real", root / ".flip_link"))

    def poll(n: int) -> None:
        if n % 4 == 3:
            ingest.sync(tree.settings, tree.index)
        else:
            ingest.sync_paths(tree.settings, tree.index, ["flip.md"])

    result = race(tree, swapper, poll, served_text(tree, "flip.md"))
    assert result.swaps > 100 and result.polls >= 10 and result.reads > 100
    assert (result.leaks, result.read_leaks) == (0, 0), result


def test_a_file_swapped_for_a_fifo_never_hangs_a_sync(tree: Tree) -> None:
    root = tree.root
    (root / "pipe.md").write_text(INSIDE_TEXT)
    os.mkfifo(root / ".pipe_fifo")
    swapper = Swapper(swap_by_renames(root / "pipe.md", root / ".pipe_real", root / ".pipe_fifo"))
    polls = 0
    finished = threading.Event()
    failure: list[BaseException] = []

    def syncing() -> None:
        nonlocal polls
        try:
            deadline = time.monotonic() + RACE_SECONDS
            while time.monotonic() < deadline:
                if polls % 4 == 3:
                    ingest.sync(tree.settings, tree.index)
                else:
                    ingest.sync_paths(tree.settings, tree.index, ["pipe.md"])
                polls += 1
        except BaseException as exc:
            failure.append(exc)
        finally:
            finished.set()

    swapper.start()
    worker = threading.Thread(target=syncing, daemon=True)
    worker.start()
    hung = not finished.wait(timeout=RACE_SECONDS + HANG_LIMIT)
    swaps = swapper.finish()
    if hung:  # release the reader stuck in open() so the thread can end, then fail
        for name in ("pipe.md", ".pipe_fifo"):
            try:
                os.close(os.open(root / name, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                continue
    logger.info("fifo race: swaps=%d polls=%d hung=%s", swaps, polls, hung)
    assert not hung, f"a sync hung on the FIFO after {polls} polls and {swaps} swaps"
    assert failure == []
    assert swaps > 100 and polls >= 10
    report = ingest.sync(tree.settings, tree.index)
    assert report.failed == []


def finishes(call: Callable[[], object], fifo: Path) -> object:
    """What `call()` returns or raises, run in a thread; if it blocks, release the reader stuck on
    `fifo` (so the thread can end) and fail."""
    done = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(timeout=HANG_LIMIT):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"blocked on the FIFO {fifo.name}")
    return outcome[0]


def test_a_fifo_is_refused_by_the_safe_read_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.md")
    outcome = finishes(lambda: read_inside(tmp_path, "pipe.md", 1000), tmp_path / "pipe.md")
    assert isinstance(outcome, PathRefusedError) and outcome.reason == "not a regular file"


def test_a_file_growing_while_it_is_read_reads_as_a_prefix_within_the_cap(tmp_path: Path) -> None:
    """The read is sized by the file's stat: a file that grows meanwhile is read at least that far,
    as the bytes it holds, never past the cap, and refused once it is past the cap. For the whole
    race the file grows past the cap, then a fresh one (renamed into place) grows again."""
    line = b"heron " * 20 + b"\n"
    cap = len(line) * 3000
    growing = tmp_path / "log.md"
    growing.write_bytes(line)
    stop = threading.Event()

    def grow() -> None:
        while not stop.is_set():
            fresh = tmp_path / ".log.tmp"
            fresh.write_bytes(line)
            with open(fresh, "ab") as handle:
                os.replace(fresh, growing)
                while not stop.is_set() and handle.tell() <= cap:
                    handle.write(line)
                    handle.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    reads = refused = grew = 0
    try:
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            try:
                data, st = read_inside(tmp_path, "log.md", cap)
            except PathRefusedError as exc:
                assert "size cap" in exc.reason
                refused += 1
                continue
            reads += 1
            grew += len(data) > st.st_size + 1  # only the read on after the stat gets these
            assert st.st_size <= len(data) <= cap  # never cut at the stat's size
            assert data == line * (len(data) // len(line)) + line[: len(data) % len(line)]
    finally:
        stop.set()
        writer.join(timeout=HANG_LIMIT)
    logger.info("growing file: %d reads (%d grew after the stat), %d refused", reads, grew, refused)
    # Most reads meet a file that grew after its stat (~85% here): they must read on past it.
    assert reads > 0 and grew > 0
    growing.write_bytes(line * 3001)  # past the cap, standing still
    with pytest.raises(PathRefusedError, match="size cap"):
        read_inside(tmp_path, "log.md", cap)


# ---- what the walk sees now ----------------------------------------------------------------


def test_what_was_indexed_under_a_folder_that_became_a_link_out_is_removed(tree: Tree) -> None:
    root = tree.root
    assert tree.index.document_paths() == ["keep.md", "sub/secret.md"]
    (root / "sub").rename(root / "sub_old")
    (root / "sub").symlink_to(Path("..") / "outside", target_is_directory=True)
    report = ingest.sync_paths(tree.settings, tree.index, ["sub/secret.md"])
    assert report.removed_paths == ["sub/secret.md"]
    assert {s.path: s.reason for s in report.skipped} == {"sub": "symlink points outside the root"}
    assert not tree.leaked()
    # A real folder again, holding a file of the outside file's size and mtime: read afresh.
    (root / "sub").unlink()
    (root / "sub").mkdir()
    same = root / "sub" / "secret.md"
    same.write_text("x" * len(OUTSIDE_TEXT))
    st = (tree.outside / "secret.md").stat()
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))
    ingest.sync(tree.settings, tree.index)
    assert not tree.leaked()


def test_a_path_below_a_file_is_gone_not_an_error(tree: Tree) -> None:
    report = ingest.sync_paths(tree.settings, tree.index, ["keep.md/inner.md"])
    assert report.failed == [] and report.skipped == []


def test_a_link_inside_the_root_is_reported_and_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real.md").write_text("# Real\n")
    (tmp_path / "alias.md").symlink_to("real.md")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inner.md").write_text("# Inner\n")
    (tmp_path / "again").symlink_to("folder", target_is_directory=True)
    result = walk(tmp_path, max_file_bytes=1000)
    assert [f.path for f in result.files] == ["folder/inner.md", "real.md"]
    assert sorted(p for p, _ in result.skipped) == ["again", "alias.md"]
    assert all("inside the root" in reason for _, reason in result.skipped)
    for rel in ("alias.md", "again/inner.md"):
        with pytest.raises(PathRefusedError, match="symlink"):
            confine(tmp_path, rel)
        with pytest.raises(PathRefusedError, match="symlink"):
            read_inside(tmp_path, rel, 1000)


# ---- hard links ----------------------------------------------------------------------------


def test_a_hard_link_to_a_file_outside_is_skipped_and_never_served(tree: Tree) -> None:
    os.link(tree.outside / "secret.md", tree.root / "linked.md")
    report = ingest.sync(tree.settings, tree.index)
    skipped = {s.path: s.reason for s in report.skipped}
    assert "hard link" in skipped["linked.md"] and "KB_ALLOW_HARDLINKS" in skipped["linked.md"]
    assert not tree.leaked()
    for read in (
        lambda: confine(tree.root, "linked.md"),
        lambda: read_inside(tree.root, "linked.md", 100_000),
    ):
        with pytest.raises(PathRefusedError, match="hard link"):
            read()


def test_a_file_hard_linked_after_indexing_leaves_the_index(tree: Tree) -> None:
    os.link(tree.root / "keep.md", tree.outside / "copy.md")
    report = ingest.sync(tree.settings, tree.index)
    assert report.removed_paths == ["keep.md"]


def test_hard_links_are_indexed_and_served_when_the_setting_allows_them(tree: Tree) -> None:
    os.link(tree.outside / "secret.md", tree.root / "linked.md")
    settings = tree.settings.model_copy(update={"allow_hardlinks": True})
    report = ingest.sync(settings, tree.index)
    assert report.added_paths == ["linked.md"]
    assert [h.path for h in tree.index.search(MARK).results] == ["linked.md"]
    file = confine(tree.root, "linked.md", allow_hardlinks=True)
    assert MARK.encode() in read_inside(tree.root, file, 100_000, allow_hardlinks=True)[0]


def test_allow_hardlinks_comes_from_the_environment() -> None:
    assert Settings.from_env({"KB_ALLOW_HARDLINKS": "1"}).allow_hardlinks is True
    assert Settings.from_env({}).allow_hardlinks is False


# ---- names ---------------------------------------------------------------------------------

UNDECODABLE = b"bad\xff\xfe.md"


def _make_undecodable(root: Path) -> None:
    fd = os.open(os.fsencode(root) + b"/" + UNDECODABLE, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"# Bad name\n\nThe name is not UTF-8.\n")
    finally:
        os.close(fd)


def test_a_name_that_is_not_utf8_is_skipped_and_the_rest_indexed(tree: Tree) -> None:
    _make_undecodable(tree.root)
    (tree.root / "new.md").write_text("# New\n\nA new wren note.\n")
    report = ingest.sync(tree.settings, tree.index)
    skipped = {s.path: s.reason for s in report.skipped}
    assert skipped == {"bad\\xff\\xfe.md": "the name is not valid UTF-8"}
    assert report.added_paths == ["new.md"]
    # The watcher's step names the file the way os.fsdecode spells it.
    again = ingest.sync_paths(tree.settings, tree.index, [os.fsdecode(UNDECODABLE)])
    assert [s.path for s in again.skipped] == ["bad\\xff\\xfe.md"] and again.failed == []
    with pytest.raises(PathRefusedError):
        check_path_syntax(os.fsdecode(UNDECODABLE))


def test_kb_index_json_lists_an_undecodable_name_under_skipped(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "ok.md").write_text("# Fine\n\nIndexed anyway.\n")
    _make_undecodable(root)
    run = subprocess.run(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(tmp_path / "idx"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["added"] == 1
    assert report["skipped"] == [{"path": "bad\\xff\\xfe.md", "reason": "the name is not valid UTF-8"}]


def test_a_name_with_a_newline_is_skipped_like_the_path_check_refuses_it(tree: Tree) -> None:
    (tree.root / "two\nlines.md").write_text("# Two lines\n")
    (tree.root / "odd\x7fname").mkdir()
    (tree.root / "odd\x7fname" / "inside.md").write_text("# Inside an odd folder\n")
    report = ingest.sync(tree.settings, tree.index)
    skipped = {s.path: s.reason for s in report.skipped}
    assert skipped == {
        "two\\x0alines.md": "control characters are not allowed in paths",
        "odd\\x7fname": "control characters are not allowed in paths",
    }
    assert tree.index.document_paths() == ["keep.md", "sub/secret.md"]
    with pytest.raises(PathRefusedError, match="control characters"):
        check_path_syntax("two\nlines.md")


def test_an_ignore_file_that_is_a_fifo_does_not_hang_the_walk(tmp_path: Path) -> None:
    (tmp_path / "doc.md").write_text("# Doc\n")
    os.mkfifo(tmp_path / ".kbignore")
    result = finishes(lambda: walk(tmp_path, max_file_bytes=1000), tmp_path / ".kbignore")
    assert isinstance(result, WalkResult) and [f.path for f in result.files] == ["doc.md"]

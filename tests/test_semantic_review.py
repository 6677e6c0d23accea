"""Review of semantic search: damaged vector files, the prepared model's cache, paging a fused
ranking, and passages shared by many documents."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_cli import kb
from test_semantic import QUESTION, TOPICS, embed_now, indexed, only_segment, started

from kb.config import Settings
from kb.index import SearchIndex
from kb.library import Library, embed_missing
from kb.models import SyncReport
from kb.semantic._store import SEGMENT_PREFIX, VectorStore


def _model() -> tuple[str, int]:
    from kb.semantic._model import DIMENSIONS, MODEL_ID

    return MODEL_ID, DIMENSIONS


def test_a_truncated_vector_file_is_dropped_not_fatal(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    segment = only_segment(settings)
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) // 2])  # a zip that ends early (a copy cut short, a bad disk)
    assert len(VectorStore(segment.parent, *_model())) == 0
    report = embed_now(settings)
    assert (report.embedded, report.semantic_coverage) == (len(TOPICS), 1.0)


def test_a_bit_flip_in_a_vector_file_does_not_stop_the_server(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    segment = only_segment(settings)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the stored arrays: zip's CRC check fails on reading
    segment.write_bytes(bytes(data))
    library = Library.open(settings)
    library.start()
    try:
        assert library.synced.wait(60), "the startup sync thread died"
        assert library.embedder is not None and library.embedder.idle.wait(120)
        assert library.search(QUESTION, limit=1).results[0].path == "kitchen/bread.md"
    finally:
        library.close()


def test_a_damaged_prepared_model_in_the_cache_is_prepared_again(tmp_path: Path) -> None:
    from kb.semantic import Semantic
    from kb.semantic._model import prepared_name

    cache = tmp_path / "cache"
    cache.mkdir()
    name = prepared_name()
    (cache / name).write_bytes(b"not a model")  # a bad disk, a copy cut short, another tool's file
    encoder = Semantic(tmp_path / "vectors", cache).load(threads=1)
    assert encoder.query("bread").shape == (384,)
    assert (cache / name).stat().st_size > 1_000_000


def test_a_passage_copied_in_many_documents_leaves_room_for_the_others(tmp_path: Path) -> None:
    # One page in 30 copies (versions of a product's docs), indexed before the page that answers.
    copies = {f"v{i:02}/bread.md": TOPICS["kitchen/bread.md"] for i in range(30)}
    settings = indexed(tmp_path, {**copies, "zz/oil.md": TOPICS["garage/oil.md"]})
    library = started(settings)
    try:
        found = library.search("how frequently should a vehicle get fresh lubricant", limit=3)
        assert "zz/oil.md" in [h.path for h in found.results]
    finally:
        library.close()


def _paged(library: Library, query: str, **options: object) -> list[str]:
    """Every hit's id, page after page of 10."""
    shown: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = library.search(query, limit=10, offset=offset, **options)
        shown += [h.id for h in page.results]
        assert len(shown) < 1_000, "pages never end"
        offset = page.next_offset
    return shown


def test_pages_of_a_fused_ranking_show_each_passage_once(tmp_path: Path) -> None:
    # Each note says 'bread' among other words, longer ones lower lexically; the later ones are about
    # baking (near in meaning), the earlier ones are not: a deeper lexical ranking (a later page) gives
    # the baking ones a second vote, and they must not change places with passages already shown.
    filler = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    baking = "knead the dough with flour and yeast then bake the loaf in a hot oven until golden".split()
    notes = {}
    for i in range(300):
        words = baking if i % 7 == 3 and i >= 150 else filler
        body = " ".join(words[(i + j) % len(words)] for j in range(5 + i))
        notes[f"notes/d{i:03}.md"] = f"# Note {i}\n\nbread {body}\n"
    settings = indexed(tmp_path, notes)
    library = started(settings)
    try:
        for all_passages in (False, True):
            shown = _paged(library, "baking bread in an oven", path="notes/", all_passages=all_passages)
            assert len(shown) == len(set(shown)), f"shown twice (all_passages={all_passages})"
            assert {i.partition("#")[0] for i in shown} == set(notes), (
                f"never shown (all_passages={all_passages})"
            )
    finally:
        library.close()


def test_a_search_while_the_vectors_are_read_again_still_finds_them(tmp_path: Path) -> None:
    from kb.semantic import Semantic

    settings = indexed(tmp_path)
    folder = settings.index_dir / "vectors"
    semantic = Semantic(folder, settings.cache_dir)
    semantic.load(threads=1)
    serving = semantic.store
    query = semantic.encoder.query(QUESTION) if semantic.encoder else None
    assert query is not None and len(serving.nearest(query, 3)) == len(TOPICS)
    # Another process merges the segments (dropping one vector no passage uses any more)...
    other = VectorStore(folder, *_model())
    index = SearchIndex.open(settings.index_dir, settings.root)
    keep = set(sorted(index.vector_keys())[1:])
    index.close()
    other.compact(lambda: keep)
    # ...and a segment arrives that takes a while to read: a named pipe, read once something writes.
    pipe = folder / f"{SEGMENT_PREFIX}0-slow.npz"
    os.mkfifo(pipe)
    reading = threading.Thread(target=serving.refresh)
    reading.start()
    writer = os.open(pipe, os.O_WRONLY)  # returns once the refresh has opened the pipe for reading
    try:
        assert len(serving.nearest(query, 3)) > 0, "a search in the middle of a refresh found no vector"
        searched = threading.Event()
        search = threading.Thread(target=lambda: (semantic.nearest(QUESTION, 3), searched.set()))
        search.start()
        assert searched.wait(30), "a search waited for the refresh of another thread"
    finally:
        os.write(writer, b"not a segment")
        os.close(writer)
        reading.join(30)
    assert len(serving.nearest(query, 3)) == len(TOPICS) - 1


def test_a_segment_written_in_the_same_clock_tick_as_the_last_look_is_seen(tmp_path: Path) -> None:
    # Folder times are coarse on many file systems (a kernel tick on ext4 before Linux 6.13, 1 s on
    # HFS+, 2 s on FAT): another process's segment may leave the folder's time as it was.
    settings = indexed(tmp_path)
    folder = settings.index_dir / "vectors"
    serving = VectorStore(folder, *_model())
    assert len(serving) == len(TOPICS)
    looked = folder.stat()
    writer = VectorStore(folder, *_model())
    vector = np.zeros((1, 384), dtype=np.float32)
    vector[0, 0] = 1.0
    writer.add([12345], vector)
    os.utime(folder, ns=(looked.st_atime_ns, looked.st_mtime_ns))  # the same tick
    serving.refresh()
    assert serving.has(12345)


def test_the_vectors_version_moves_with_every_change_a_search_could_see(tmp_path: Path) -> None:
    # Cached search results are keyed by it: a change it missed would serve stale results by meaning.
    folder = indexed(tmp_path).index_dir / "vectors"
    serving, writer = VectorStore(folder, *_model()), VectorStore(folder, *_model())
    vector = np.zeros((1, 384), dtype=np.float32)
    vector[0, 0] = 1.0
    seen = [serving.version]
    serving.add([1], vector)  # its own write
    seen.append(serving.version)
    writer.add([2], vector)  # another process's, taken in by a look
    serving.refresh()
    seen.append(serving.version)
    serving.compact(lambda: {2})  # drops key 1
    seen.append(serving.version)
    assert seen == sorted(set(seen)), f"a change left the version as it was: {seen}"
    assert not serving.has(1) and serving.has(2)


def test_a_file_where_the_vectors_folder_should_be_leaves_the_server_lexical(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    shutil.rmtree(settings.index_dir / "vectors")
    (settings.index_dir / "vectors").write_text("someone's notes")
    library = Library.open(settings)
    library.start()
    try:
        assert library.synced.wait(60), "the startup sync thread died"
        found = library.search("oven")
        assert found.results[0].path == "kitchen/bread.md"
        assert found.semantic_coverage is None  # no 'still embedding' notice that never ends
        assert library.status()["semantic"]["state"] == "unavailable"
    finally:
        library.close()


def test_kb_index_keeps_the_vectors_a_server_just_made_for_its_fresh_edit(tmp_path: Path) -> None:
    from kb.ingest import sync
    from kb.semantic import Semantic

    settings = indexed(tmp_path)
    cron = SearchIndex.open(settings.index_dir, settings.root)  # a `kb index` run, its sync done
    # Meanwhile the server indexes a fresh edit and embeds it at once.
    (settings.root / "kitchen/soup.md").write_text("# Soup\n\nSimmer the onions in stock for an hour.\n")
    server = SearchIndex.open(settings.index_dir, settings.root)
    try:
        sync(settings, server)
        serving = Semantic(server.vectors_dir, settings.cache_dir)
        serving.load(threads=1)
        assert serving.embed(server.passages(lambda key: not serving.store.has(key))) == 1
        # The `kb index` run ends: what lacks a vector is embedded, unused vectors are dropped.
        report = SyncReport(root=str(settings.root), index_dir=str(settings.index_dir))
        embed_missing(settings, cron, report)
        assert VectorStore(server.vectors_dir, *_model()).missing(server.vector_keys()) == []
    finally:
        cron.close()
        server.close()


def test_kb_index_and_status_with_a_file_where_the_vectors_folder_should_be(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    shutil.rmtree(settings.index_dir / "vectors")
    (settings.index_dir / "vectors").write_text("someone's notes")
    run = kb("index", settings.root, "--index-dir", settings.index_dir, "--json", "--semantic", "on")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["semantic_coverage"] is None
    status = kb("status", "--index-dir", settings.index_dir, "--json")
    assert status.exit_code == 0, status.output
    assert (settings.index_dir / "vectors").read_text() == "someone's notes"


def test_a_preparation_killed_midway_leaves_no_lasting_files_in_the_cache(tmp_path: Path) -> None:
    from kb.semantic import Semantic
    from kb.semantic._model import prepared_name

    cache = tmp_path / "cache"
    cache.mkdir()
    name = prepared_name()
    Semantic(tmp_path / "v", Settings().cache_dir).load(threads=1)  # prepared there once
    shutil.copyfile(Settings().cache_dir / name, cache / name)
    # What a kill -9 (or a power cut) in the middle of a first preparation leaves: ~170 MB.
    left = cache / ".prepare-k1ll3d"
    left.mkdir()
    (left / "folded.onnx").write_bytes(b"\0" * 1000)
    hours_ago = time.time() - 2 * 3600
    os.utime(left / "folded.onnx", (hours_ago, hours_ago))
    os.utime(left, (hours_ago, hours_ago))
    Semantic(tmp_path / "vectors", cache).load(threads=1)
    assert not left.exists()


@pytest.mark.parametrize("shortlist_from", [None, 200], ids=["whole", "shortlisted"])
def test_searches_racing_many_small_writes_always_see_whole_rows(
    tmp_path: Path, shortlist_from: int | None
) -> None:
    """Writes land in room past the rows a search reads (copied into larger room now and then): a
    search running meanwhile sees whole rows, each vector under its own key; also once the rows are
    many enough to be shortlisted by their reduced copy, which each write extends."""
    model_id, dimensions = _model()
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((600, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1)[:, None]
    store = VectorStore(tmp_path / "vectors", model_id, dimensions, shortlist_from=shortlist_from)
    done = threading.Event()
    wrong: list[tuple[int, int, float]] = []

    def search() -> None:
        probe = np.random.default_rng(8)
        while not done.is_set():
            i = int(probe.integers(len(vectors)))
            for key, similarity in store.nearest(vectors[i], 3):
                if abs(float(vectors[key] @ vectors[i]) - similarity) > 1e-4:
                    wrong.append((i, key, similarity))

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        for start in range(0, len(vectors), 8):  # 75 writes: the room grows many times
            store.add(list(range(start, start + 8)), vectors[start : start + 8])
        store.add([0, 1, 2], vectors[:3])  # known keys: nothing added
    finally:
        done.set()
        searcher.join(30)
    assert wrong == []
    assert len(store) == len(vectors)
    for i in (0, 7, 8, 300, 599):  # each key's row, by the key (what a filtered search reads)
        assert [key for key, _ in store.nearest(vectors[i], 1, among=[i, 599 - i])] == [i]
    assert len(VectorStore(tmp_path / "vectors", model_id, dimensions)) == len(vectors)  # as written


def test_past_the_shortlist_threshold_the_nearest_are_those_of_the_whole_product(tmp_path: Path) -> None:
    """Many vectors are shortlisted by their reduced rows before the whole product: the nearest
    found are (nearly always) the exact ones, with exact similarities; and a vector written after
    the threshold was passed is found like the others."""
    model_id, dimensions = _model()
    rng = np.random.default_rng(11)
    # As a sentence encoder's vectors are: most of their spread along fewer directions than they
    # have (here 48 of 384), the rest small.
    mixing = rng.standard_normal((48, dimensions)).astype(np.float32)

    def encoded(count: int) -> np.ndarray:
        made = rng.standard_normal((count, 48)).astype(np.float32) @ mixing
        made += 0.5 * rng.standard_normal((count, dimensions)).astype(np.float32)
        return made / np.linalg.norm(made, axis=1)[:, None]

    vectors = encoded(6000)
    quick = VectorStore(tmp_path / "vectors", model_id, dimensions, shortlist_from=2000)
    for start in range(0, 5000, 500):
        quick.add(list(range(start, start + 500)), vectors[start : start + 500])
    assert quick._data.reduced is not None, "5,000 vectors past a threshold of 2,000 are shortlisted"
    quick.add(list(range(5000, 6000)), vectors[5000:])  # written after the threshold was passed
    same = 0
    for query in encoded(40):
        found = quick.nearest(query, 20)
        for key, similarity in found:
            assert abs(float(vectors[key] @ query) - similarity) < 1e-4, "similarities are exact"
        same += [key for key, _ in found] == np.argsort(-(vectors @ query))[:20].tolist()
    assert same >= 38, f"only {same} of 40 queries found the exact 20 nearest"
    for key in (5003, 5999):  # rows written after the threshold: projected as they came
        assert quick.nearest(vectors[key], 1)[0][0] == key


def _low_rank(rng: np.random.Generator, dimensions: int) -> Callable[[int], np.ndarray]:
    """Vectors spread as an encoder's are: along 48 of their directions, the rest small."""
    mixing = rng.standard_normal((48, dimensions)).astype(np.float32)

    def encoded(count: int) -> np.ndarray:
        made = rng.standard_normal((count, 48)).astype(np.float32) @ mixing
        made += 0.5 * rng.standard_normal((count, dimensions)).astype(np.float32)
        return made / np.linalg.norm(made, axis=1)[:, None]

    return encoded


def test_the_shortlist_follows_a_topic_written_after_the_threshold(tmp_path: Path) -> None:
    """The axes are found again each time the vectors have doubled: a second topic, written after
    the threshold was passed (and read in that order by a restarted server), is shortlisted as well."""
    model_id, dimensions = _model()
    rng = np.random.default_rng(9)
    first, second = _low_rank(rng, dimensions), _low_rank(rng, dimensions)
    vectors = np.vstack([first(2000), second(30000)])
    keys = rng.integers(-(2**62), 2**62, size=len(vectors), dtype=np.int64)  # hashes, as passages' are
    store = VectorStore(tmp_path / "vectors", model_id, dimensions, shortlist_from=2000)
    for start in range(0, len(vectors), 2000):
        store.add(keys[start : start + 2000].tolist(), vectors[start : start + 2000])
    restarted = VectorStore(tmp_path / "vectors", model_id, dimensions, shortlist_from=2000)
    for reader in (store, restarted):
        assert reader._data.reduced is not None
        kept = []
        for query in second(30):
            exact = set(keys[np.argsort(-(vectors @ query))[:100]].tolist())
            kept.append(len(exact & {key for key, _ in reader.nearest(query, 100)}) / 100)
        assert min(kept) >= 0.95, f"the second topic's nearest fell out of the shortlist: {sorted(kept)[:5]}"


def test_one_broken_vector_costs_only_itself_in_a_shortlisted_search(tmp_path: Path) -> None:
    model_id, dimensions = _model()
    vectors = _low_rank(np.random.default_rng(5), dimensions)(3000)
    vectors[17] = np.nan  # a bad model output, say: it must not spoil the principal axes
    store = VectorStore(tmp_path / "vectors", model_id, dimensions, shortlist_from=1000)
    store.add(list(range(3000)), vectors)
    assert store._data.reduced is not None and np.isfinite(store._data.reduced[:16]).all()
    assert all(store.nearest(vectors[key], 1)[0][0] == key for key in range(100, 3000, 97))


def test_a_key_given_twice_in_one_write_is_stored_once(tmp_path: Path) -> None:
    model_id, dimensions = _model()
    vectors = _low_rank(np.random.default_rng(3), dimensions)(4)
    store = VectorStore(tmp_path / "vectors", model_id, dimensions)
    store.add([1, 2, 1, 3], vectors)
    assert len(store) == 3 and len(store._data.keys) == 3
    assert store.nearest(vectors[0], 1)[0][0] == 1  # the first of the two

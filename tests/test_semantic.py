"""Search by meaning: a question in other words finds its passage, vectors are made once per text,
kept consistent through kill -9, dropped with their documents, and filters hold for them too.

Real parts throughout: the real encoder (prepared once into the cache), real Tantivy indexes, real
`kb index` runs in this process and as processes that are killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import anyio
import pytest
from mcp import Client
from mcp_helpers import anyio_backend  # noqa: F401
from test_cli import kb

from kb.config import Settings
from kb.index import Ranking, SearchIndex
from kb.library import Library, embed_missing
from kb.models import SyncReport
from kb.semantic import Semantic
from kb.semantic._store import SEGMENT_PREFIX, VectorStore
from kb.server import KbRuntime, build_server

TOPICS = {
    "kitchen/bread.md": "# Baking bread\n\nPreheat the oven, then bake the dough for forty minutes until "
    "the crust turns golden brown.\n",
    "garage/oil.md": "# Engine care\n\nDrain the motor oil every ten thousand kilometres and replace the "
    "filter.\n",
    "garden/tomatoes.md": "# Tomatoes\n\nWater the tomato plants early in the morning and prune the lower "
    "leaves.\n",
}
# Not one of its words is in the bread page (nor a near spelling): only its meaning leads there.
QUESTION = "how long should a loaf stay in the stove"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def indexed(tmp_path: Path, files: dict[str, str] = TOPICS, **options: object) -> Settings:
    root = tmp_path / "docs"
    write(root, files)
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=False, **options)
    run = kb("index", root, "--index-dir", settings.index_dir, "--json", "--semantic", "on")
    assert run.exit_code == 0, run.output
    return settings


def only_segment(settings: Settings) -> Path:
    """The one vector segment of a freshly indexed corpus."""
    [segment] = [p for p in (settings.index_dir / "vectors").iterdir() if p.name.startswith(SEGMENT_PREFIX)]
    return segment


def embed_now(settings: Settings) -> SyncReport:
    """What `kb index` does after its sync: embed what lacks a vector; its report."""
    report = SyncReport(root=str(settings.root), index_dir=str(settings.index_dir))
    index = SearchIndex.open(settings.index_dir, settings.root)
    try:
        embed_missing(settings, index, report)
    finally:
        index.close()
    return report


def started(settings: Settings) -> Library:
    """A library past its first sync, its encoder loaded and every passage embedded."""
    library = Library.open(settings)
    library.start()
    assert library.synced.wait(60)
    if settings.semantic:
        assert library.embedder is not None and library.embedder.idle.wait(120)
    return library


def test_a_question_in_other_words_finds_its_passage(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    library = started(settings)
    try:
        found = library.search(QUESTION, limit=3)
        assert found.results[0].path == "kitchen/bread.md"
        # Found by meaning alone, so its snippet is where the passage starts, with nothing marked.
        assert found.results[0].snippet.startswith("Baking bread")
        assert "**" not in found.results[0].snippet
        lexical = started(settings.model_copy(update={"semantic": False}))
        try:
            assert "kitchen/bread.md" not in [h.path for h in lexical.search(QUESTION).results]
            assert lexical.search(QUESTION).semantic_coverage is None
        finally:
            lexical.close()
    finally:
        library.close()


def test_filters_hold_for_passages_found_by_meaning(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    library = started(settings)
    try:
        assert [h.path for h in library.search(QUESTION, path="kitchen/").results] == ["kitchen/bread.md"]
        # Nothing in garage/ is about bread: what is merely the nearest there is not shown.
        assert library.search(QUESTION, path="garage/").results == []
        assert library.search(QUESTION, formats=["pdf"]).results == []
    finally:
        library.close()


def test_a_question_about_nothing_in_the_folder_finds_nothing(tmp_path: Path) -> None:
    library = started(indexed(tmp_path))
    try:
        assert library.search("kubernetes pod autoscaling").results == []
    finally:
        library.close()


def test_operators_mean_exactly_what_they_say(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    library = started(settings)
    try:
        assert library.search('"motor oil"').results[0].path == "garage/oil.md"
        assert [h.path for h in library.search('"motor oil"').results] == ["garage/oil.md"]
        assert "kitchen/bread.md" not in [h.path for h in library.search("oven -bake").results]
    finally:
        library.close()


def test_kb_index_embeds_each_text_once_renames_reuse_and_removals_drop(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    store = VectorStore(settings.index_dir / "vectors", *_model())
    assert len(store) == len(TOPICS)

    def index() -> dict[str, object]:
        run = kb("index", settings.root, "--index-dir", settings.index_dir, "--json", "--semantic", "on")
        assert run.exit_code == 0, run.output
        return json.loads(run.stdout)

    again = index()
    assert (again["embedded"], again["semantic_coverage"]) == (0, 1.0)
    (settings.root / "garden/tomatoes.md").rename(settings.root / "garden/moved.md")
    moved = index()
    assert (moved["added"], moved["removed"], moved["embedded"]) == (1, 1, 0)
    (settings.root / "garage/oil.md").unlink()
    index()
    store.refresh()
    assert len(store) == len(TOPICS) - 1
    off = kb("index", settings.root, "--index-dir", settings.index_dir, "--json", "--semantic", "off")
    assert json.loads(off.stdout)["semantic_coverage"] is None


def test_a_damaged_vector_file_is_dropped_and_its_passages_embedded_again(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    segment = only_segment(settings)
    segment.write_bytes(b"not a vector file")
    report = embed_now(settings)
    assert (report.embedded, report.semantic_coverage) == (len(TOPICS), 1.0)
    assert not segment.exists()


def test_kill_9_while_embedding_then_a_rerun_completes_the_vectors(tmp_path: Path) -> None:
    root, index_dir = tmp_path / "docs", tmp_path / "index"
    passages = 1500
    write(
        root,
        {f"n{i:04}.md": f"# Note {i}\n\nThe number {i} is written here in words." for i in range(passages)},
    )
    first_segment = threading.Event()

    def watch_log(log: IO[str]) -> None:
        for line in log:
            if "vectors: wrote" in line:
                first_segment.set()

    with subprocess.Popen(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(index_dir), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KB_SEMANTIC": "on", "KB_DEBUG": "1"},
    ) as run:
        assert run.stderr is not None
        reader = threading.Thread(target=watch_log, args=(run.stderr,), daemon=True)
        reader.start()
        try:
            assert first_segment.wait(180), "kb index never wrote a vector segment"
        finally:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
            reader.join(30)
    assert run.returncode == -signal.SIGKILL
    store = VectorStore(index_dir / "vectors", *_model())
    assert 0 < len(store) < passages, "the kill should land mid-way"
    rerun = kb("index", root, "--index-dir", index_dir, "--json", "--semantic", "on")
    assert rerun.exit_code == 0, rerun.output
    report = json.loads(rerun.stdout)
    assert report["embedded"] == passages - len(store)
    assert report["semantic_coverage"] == 1.0
    store.refresh()
    assert len(store) == passages


def test_serving_embeds_in_the_background_and_fresh_edits_are_searched_by_meaning(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root, {k: v for k, v in TOPICS.items() if not k.startswith("kitchen")})
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, rescan_seconds=3600)
    library = Library.open(settings)
    committed = threading.Event()
    try:
        library.start(on_commit=lambda _report: committed.set())
        assert library.watching.wait(60)
        assert library.embedder is not None and library.embedder.idle.wait(120)
        assert library.search("tomato").semantic_coverage == 1.0
        write(root, {"kitchen/bread.md": TOPICS["kitchen/bread.md"]})
        assert committed.wait(60), "the watcher never committed the new page"
        assert library.embedder.idle.wait(120)
        found = library.search(QUESTION, limit=1)
        assert (found.results[0].path, found.semantic_coverage) == ("kitchen/bread.md", 1.0)
    finally:
        library.close()


@pytest.mark.parametrize("value", ["off", "OFF"])
def test_semantic_off_from_the_environment(tmp_path: Path, value: str) -> None:
    assert Settings.from_env({"KB_SEMANTIC": value}).semantic is False


def _model() -> tuple[str, int]:
    from kb.semantic._model import DIMENSIONS, MODEL_ID

    return MODEL_ID, DIMENSIONS


def test_the_encoder_puts_alike_texts_near(tmp_path: Path) -> None:
    semantic = Semantic(tmp_path / "vectors", Settings().cache_dir)
    encoder = semantic.load(threads=1)
    a, b = encoder.passages(["bake bread in the oven", "change the engine oil"])
    assert float(a @ encoder.query("baking a loaf")) > float(b @ encoder.query("baking a loaf"))


def test_a_rebuild_for_another_folder_keeps_the_vectors_and_needs_none_again(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    other = tmp_path / "copy"
    write(other, TOPICS)
    flags = ("--rebuild", "--json", "--semantic", "on")
    run = kb("index", other, "--index-dir", settings.index_dir, *flags)  # wipes the index made for docs/
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["added"] == len(TOPICS)
    assert (report["embedded"], report["semantic_coverage"]) == (0, 1.0)


@pytest.mark.anyio
async def test_the_search_tool_says_how_far_embedding_has_come(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root, TOPICS)
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=1, watch=False)
    runtime = KbRuntime(settings)
    async with Client(build_server(settings, runtime=runtime), cache=None) as client:
        with anyio.fail_after(60):
            await runtime.wait_synced()
            embedder = runtime.library.embedder
            assert embedder is not None
            early = (await client.call_tool("search", {"query": QUESTION})).structured_content or {}
            if not embedder.idle.is_set():  # usually: the encoder is still loading
                assert early["semantic_coverage"] < 1.0
                assert "embedding" in early["notice"]
            await anyio.to_thread.run_sync(embedder.idle.wait)
        done = (await client.call_tool("search", {"query": QUESTION})).structured_content or {}
    assert "semantic_coverage" not in done and "notice" not in done
    assert done["results"][0]["path"] == "kitchen/bread.md"


def test_kb_status_reads_a_damaged_vector_file_without_removing_it(tmp_path: Path) -> None:
    settings = indexed(tmp_path)
    segment = only_segment(settings)
    segment.write_bytes(b"not a vector file")
    run = kb("status", "--index-dir", settings.index_dir, "--json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["semantic_coverage"] == 0.0
    assert segment.exists()  # a command that reads repairs nothing; kb index will


def test_a_narrow_filter_ranks_all_its_passages_by_meaning(tmp_path: Path) -> None:
    # Thirty loaves elsewhere are nearer the question than the kitchen's page: the nearest passages
    # of all (ten per candidate when filtered) hold none of the kitchen's, but a filter this narrow
    # has its own passages ranked by meaning.
    loaves = {
        f"bakery/loaf{i}.md": f"# Loaf {i}\n\nKeep loaf number {i} in the stove for {20 + i} minutes.\n"
        for i in range(30)
    }
    settings = indexed(tmp_path, {**TOPICS, **loaves})
    library = Library.open(settings, Ranking(vector_candidates=1))
    library.start()
    try:
        assert library.synced.wait(60)
        assert library.embedder is not None and library.embedder.idle.wait(120)
        assert [h.path for h in library.search(QUESTION, path="kitchen/").results] == ["kitchen/bread.md"]
        assert library.search(QUESTION, path="garage/").results == []  # near enough to nothing there
    finally:
        library.close()

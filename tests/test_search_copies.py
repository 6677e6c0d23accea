"""Copies of a passage take one result slot: exact copies, and near copies (a version's edits)."""

from __future__ import annotations

import random
from pathlib import Path

from kb.config import Settings
from kb.index import SearchIndex
from kb.index._copies import NEAR_BANDS, passage_sketch, shared_bands
from kb.ingest import sync


def build(tmp_path: Path, files: dict[str, str]) -> SearchIndex:
    root = tmp_path / "docs"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    settings = Settings(root=root, index_dir=tmp_path / "idx", jobs=1)
    index = SearchIndex.open(settings.index_dir, settings.root)
    sync(settings, index)
    return index


COPIES = {
    "book/src/ch01.md": "# Ownership\n\nEvery value in Rust has a single owner, and the value is dropped "
    "when its owner goes out of scope (version 1.80).\n",
    "book/nostarch/ch01.md": "# Ownership\n\nEvery value in Rust has a single owner; and the value is "
    "dropped when its owner goes out of scope (version 1.81).\n",
    "other.md": "# Borrowing\n\nA value may be borrowed while its owner keeps it; the owner stays.\n",
}


def test_copies_of_one_passage_take_one_slot_and_are_named(tmp_path: Path) -> None:
    index = build(tmp_path, COPIES)
    found = index.search("value owner scope")
    assert [hit.path for hit in found.results][1:] == ["other.md"]
    first = found.results[0]
    assert {first.path, *first.copies} == {"book/src/ch01.md", "book/nostarch/ch01.md"}
    every = index.search("value owner scope", all_passages=True)
    assert {hit.path for hit in every.results} == set(COPIES)


INSTALL = (
    "To install the server, download the archive for your platform from the releases page and unpack "
    "it into a folder of your choice. Run the installer from a terminal with administrator rights, "
    "then open the configuration file in your editor and set the address the server listens on. "
    "Restart the service so that it reads the new settings, and check the log for a line saying that "
    "the server is ready to accept connections from clients on the local network."
)
# What each product version changed: a word here, a renamed product, a version number.
EDITS = {
    "v1": [],
    "v2": [("archive", "package")],
    "v3": [("the server", "Acme Server"), ("editor", "text editor")],
    "v4": [("terminal", "shell"), ("4.2", "4.3")],
    "v5": [("Restart the service", "Restart the daemon"), ("local network", "local area network")],
}


def edited(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        text = text.replace(old, new, 1)
    return text


def test_near_copies_in_five_versions_take_one_slot_and_name_the_others(tmp_path: Path) -> None:
    versions = {f"{v}/docs/install.md": f"# Installing\n\n{edited(INSTALL, e)}\n" for v, e in EDITS.items()}
    other = "# Upgrading\n\nTo upgrade the server, stop it, replace its folder and start it again.\n"
    index = build(tmp_path, {**versions, "v5/docs/upgrade.md": other})
    found = index.search("install server configuration file address")
    paths = [hit.path for hit in found.results]
    assert sum(1 for path in paths if path.endswith("install.md")) == 1
    first = found.results[0]
    assert {first.path, *first.copies} == set(versions)
    every = index.search("install server configuration file address", all_passages=True)
    assert {hit.path for hit in every.results} >= set(versions)


SHARED = "If you have questions, ask on the forum or open an issue on the tracker and we will reply soon."


def test_different_passages_sharing_a_boilerplate_sentence_keep_their_slots(tmp_path: Path) -> None:
    backup = (
        "# Backups\n\nThe backup tool copies every database file to the storage bucket each night, keeps "
        "thirty daily snapshots and one monthly snapshot for a year, and checks each copy by restoring "
        f"it into a scratch database before it deletes the oldest one. {SHARED}\n"
    )
    restore = (
        "# Restoring\n\nTo restore a database, pick the snapshot by its date in the console, choose a "
        "new instance to restore into, and wait for the copy to finish before you point the "
        f"application at the new instance and retire the damaged one. {SHARED}\n"
    )
    index = build(tmp_path, {"backup.md": backup, "restore.md": restore})
    found = index.search("forum tracker questions")
    assert {hit.path for hit in found.results} == {"backup.md", "restore.md"}
    assert all(hit.copies == [] for hit in found.results)


def test_short_passages_that_differ_in_a_word_keep_their_slots(tmp_path: Path) -> None:
    stub = "# {0}\n\nSee also the chapter on {1} in the second part of the book.\n"
    files = {f"{topic}.md": stub.format(topic.title(), topic) for topic in ("ownership", "borrowing")}
    index = build(tmp_path, files)
    found = index.search("see also chapter")
    assert {hit.path for hit in found.results} == {"ownership.md", "borrowing.md"}
    assert all(hit.copies == [] for hit in found.results)


def test_a_few_changed_words_keep_enough_of_the_sketch_and_a_short_passage_has_none() -> None:
    rng = random.Random(13)
    words = INSTALL.split()
    kept = 0
    for _ in range(50):
        changed = list(words)
        for _ in range(2):
            changed[rng.randrange(len(changed))] = rng.choice(["alpha", "beta", "gamma", "delta"])
        kept += shared_bands(passage_sketch(INSTALL), passage_sketch(" ".join(changed))) >= NEAR_BANDS
    assert kept >= 40  # two changed words in eighty: a near copy, but the sketch is a sample
    assert shared_bands(passage_sketch(INSTALL), passage_sketch(SHARED * 3)) == 0
    assert not any(passage_sketch("See also the chapter on ownership in the book."))

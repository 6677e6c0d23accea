"""Translations of a document (a language tag in the path) take one result slot, naming the others."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_search_copies import build

from kb.index._translations import family, language

CODE = "```\npip install acme-server\nacme-server --port 8080 --config acme.toml\n```\n"
PAGES = {
    "en": "# Installing\n\nInstall the server with pip, then start it on a port of your choice.\n\n" + CODE,
    "fr": "# Installation\n\nInstallez le serveur avec pip, puis démarrez-le sur le port de votre choix.\n\n"
    + CODE,
    "de": "# Installation\n\nInstallieren Sie den Server mit pip und starten Sie ihn auf einem Port.\n\n"
    + CODE,
    "pt-br": "# Instalação\n\nInstale o servidor com pip e inicie-o na porta que preferir.\n\n" + CODE,
}
OTHER = "# Configuring\n\nThe server reads acme.toml at start; the port set there wins over --port.\n"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docs/en/install.md", "docs/fr/install.md"),
        ("docs/en/install.md", "docs/pt-BR/install.md"),
        ("docs/en/install.md", "docs/zh_Hant/install.md"),
        ("content/en/docs/setup/install.md", "content/ja/docs/setup/install.md"),
        ("install.md", "install.de.md"),
        ("guide/install.en.md", "guide/install.es.md"),
        ("README.txt", "README.ko.txt"),
    ],
)
def test_translations_share_a_family(a: str, b: str) -> None:
    assert family(a).number == family(b).number


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docs/api/install.md", "docs/cli/install.md"),  # not languages
        ("docs/en/install.md", "docs/en/upgrade.md"),
        ("docs/en/install.md", "docs/fr/guide/install.md"),
        ("docs/em/install.md", "docs/en/install.md"),  # "em" is no language code
        ("notes.md", "notes.txt"),
    ],
)
def test_other_documents_do_not(a: str, b: str) -> None:
    assert family(a).number != family(b).number


def test_the_original_is_english_or_untagged() -> None:
    assert family("docs/en/install.md").original
    assert family("docs/en-US/install.md").original
    assert family("install.md").original
    assert family("install.en.md").original
    assert not family("docs/fr/install.md").original
    assert not family("install.fr.md").original
    assert not family("states/ca/overview.md").original
    assert [language(name) for name in ("fr", "PT-br", "zh_Hant", "es-419", "em", "fra", "f")] == [
        "fr",
        "pt",
        "zh",
        "es",
        None,
        None,
        None,
    ]


def test_translations_take_one_slot_shown_in_english_to_an_english_question(tmp_path: Path) -> None:
    files = {f"docs/{lang}/install.md": text for lang, text in PAGES.items()}
    index = build(tmp_path, {**files, "docs/en/configure.md": OTHER})
    found = index.search("How do I install the server and start it on a port?")
    assert sorted(hit.path for hit in found.results) == ["docs/en/configure.md", "docs/en/install.md"]
    install = next(hit for hit in found.results if hit.path == "docs/en/install.md")
    assert set(install.copies) == set(files) - {"docs/en/install.md"}
    # Words alone say no language: the best-ranked translation stands for the others.
    found = index.search("acme-server port config")
    install = next(hit for hit in found.results if hit.path in files)
    assert len(found.results) == 2
    assert {install.path, *install.copies} == set(files)
    every = index.search("acme-server port config", all_passages=True)
    assert {hit.path for hit in every.results} >= set(files)


def test_a_question_in_another_language_is_shown_its_translation(tmp_path: Path) -> None:
    files = {f"docs/{lang}/install.md": text for lang, text in PAGES.items()}
    index = build(tmp_path, files)
    found = index.search("Installez le serveur avec pip sur le port de votre choix")
    assert [hit.path for hit in found.results] == ["docs/fr/install.md"]
    assert "docs/en/install.md" in found.results[0].copies


def test_translations_named_by_a_tag_before_the_extension_take_one_slot(tmp_path: Path) -> None:
    files = {"README.md": PAGES["en"], "README.fr.md": PAGES["fr"], "README.de.md": PAGES["de"]}
    index = build(tmp_path, {**files, "CONFIGURE.md": OTHER})
    found = index.search("How do I install the server with pip?")
    assert [hit.path for hit in found.results] == ["README.md", "CONFIGURE.md"]
    assert set(found.results[0].copies) == {"README.fr.md", "README.de.md"}


def test_pages_in_folders_named_like_languages_but_without_an_english_one_keep_their_slots(
    tmp_path: Path,
) -> None:
    # A country's states (California, Delaware, Idaho) are not translations of one another.
    page = "# Overview\n\nThe state's offices are open on weekdays; forms are filed online or by post.\n"
    states = {
        f"states/{code}/overview.md": page.replace("state's", f"{code.upper()} state's")
        for code in ("ca", "de", "id")
    }
    index = build(tmp_path, states)
    found = index.search("When are the state offices open and how are forms filed?")
    assert {hit.path for hit in found.results} == set(states)

"""Translations of a document (a language tag in the path) take one result slot, naming the others."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_search_copies import build

from kb.index import Nearest, SearchIndex
from kb.index._english import asks_in_english
from kb.index._variants import family, language

CODE = "```\npip install acme-server\nacme-server --port 8080 --config acme.toml\n```\n"
PAGES = {
    "en": "# Installing\n\nInstall the server with pip, then start it on a port of your choice.\n\n" + CODE,
    "fr": "# Installation\n\nInstallez le serveur avec pip, puis démarrez-le sur le port de votre choix ; "
    "c'est déjà prêt.\n\n" + CODE,
    "de": "# Installation\n\nInstallieren Sie den Server mit pip und starten Sie ihn auf einem Port Ihrer "
    "Wahl, für immer; es ist schön.\n\n" + CODE,
    "pt-br": "# Instalação\n\nInstale o servidor com pip e inicie-o na porta que preferir.\n\n" + CODE,
}
OTHER = "# Configuring\n\nThe server reads acme.toml at start; the port set there wins over --port.\n"


FRENCH = "Installez le serveur avec pip, puis démarrez-le sur le port de votre choix. " * 3
ENGLISH = "Install the server with pip, then start it on a port of your choice. " * 3


# What each language's page reads like: few English words, letters of its script.
SAMPLES = {
    "zh": "使用 pip 安装服务器。然后在你选择的端口上启动它。",
    "ja": "pip でサーバーをインストールし、好きなポートで起動します。",
    "ko": "pip로 서버를 설치한 다음 원하는 포트에서 시작하세요.",
}


def french(path: str) -> int:
    """The family of `path` for a page in its language (French, unless a sample says otherwise)."""
    sample = next(
        (text for code, text in SAMPLES.items() if f"/{code}" in f"/{path}" or f".{code}." in path), FRENCH
    )
    return family(path, lambda: sample).number


def english(path: str) -> int:
    return family(path, lambda: ENGLISH).number


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docs/en/install.md", "docs/fr/install.md"),
        ("docs/en/install.md", "docs/pt-BR/install.md"),
        ("docs/en/install.md", "docs/zh_Hant/install.md"),
        ("content/en/docs/setup/install.md", "content/ja/docs/setup/install.md"),
        ("docs/en/ml/models.md", "docs/fr/ml/models.md"),  # a topic folder named like a language
        ("ml/docs/en/models.md", "ml/docs/fr/models.md"),  # ... or above the language's
        ("docs/guide/install.md", "docs/fr/guide/install.md"),  # English at the top, as VitePress keeps it
        (
            "website/docs/guide/install.md",
            "website/i18n/fr/docusaurus-plugin-content-docs/current/guide/install.md",
        ),
        (
            "versioned_docs/version-2/install.md",
            "i18n/ko/docusaurus-plugin-content-docs/version-2/install.md",
        ),
        ("blog/2024-01-01-release.md", "i18n/fr/docusaurus-plugin-content-blog/2024-01-01-release.md"),
        ("install.md", "install.de.md"),
        ("guide/install.en.md", "guide/install.es.md"),
        ("README.txt", "README.ko.txt"),
    ],
)
def test_translations_share_a_family(a: str, b: str) -> None:
    assert english(a) == french(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docs/v1.2/install.md", "docs/v1.3/install.md"),
        ("docs/1.2/install.md", "docs/2.0.1/install.md"),
        ("docs/2.x/install.md", "docs/v3/install.md"),
        ("docs/latest/install.md", "docs/stable/install.md"),
        ("versioned_docs/version-2.0/install.md", "docs/install.md"),
        ("docs/v1.2/api/v1/users.md", "docs/v1.3/api/v1/users.md"),  # the highest release only
    ],
)
def test_versions_share_a_family(a: str, b: str) -> None:
    assert english(a) == english(b)
    assert family(a, lambda: ENGLISH).original


def test_numbered_chapters_dates_and_addresses_are_no_versions() -> None:
    assert english("book/1/intro.md") != english("book/2/intro.md")
    assert english("meetings/2023.01.15/notes.md") != english("meetings/2023.02.01/notes.md")
    assert english("hosts/10.0.0.1/README.md") != english("hosts/10.0.0.2/README.md")
    assert english("docs/v1.2/api/v1/users.md") != english("docs/v1.2/api/v2/users.md")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("docs/api/install.md", "docs/cli/install.md"),  # not languages
        ("docs/en/install.md", "docs/en/upgrade.md"),
        ("docs/en/install.md", "docs/fr/guide/install.md"),
        ("docs/em/install.md", "docs/en/install.md"),  # "em" is no language code
        ("notes.md", "notes.txt"),
        ("en/README.md", "my-blog/README.md"),  # "blog" is neither a region nor a script
    ],
)
def test_other_documents_do_not(a: str, b: str) -> None:
    assert english(a) != french(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("api/scanpy.rst", "api/scanpy.tl.rst"),  # sphinx-apidoc's module pages: Tagalog, Polish
        ("api/torch.rst", "api/torch.nn.rst"),  # Norwegian Nynorsk
        ("notes/socket.md", "notes/socket.io.md"),  # Ido
        ("states/en/overview.md", "states/ca/overview.md"),
    ],
)
def test_names_that_only_look_like_languages_are_no_translations_of_english_text(a: str, b: str) -> None:
    assert english(a) != english(b)
    # Nor is a page of code and names, which reads as no language, nor a terse English one with a
    # name or two in another language.
    assert english(a) != family(b, lambda: "acme_server.start(port=8080, config='acme.toml')").number
    table = "| City | Population |\n| San José | 1,000,000 |\n| Fresno | 500,000 |\n| Oakland | 400,000 |"
    assert english(a) != family(b, lambda: table).number


def test_a_page_counts_as_a_translation_only_in_its_language_s_script() -> None:
    # An English page of formulas under a topic folder named like Malayalam is no translation.
    formulas = "Adam keeps α, β₁, β₂ and ε; θ ← θ − α·m̂/(√v̂ + ε) for every λ and μ. " * 4  # noqa: RUF001
    assert english("docs/index.md") != family("docs/ml/index.md", lambda: formulas).number
    assert english("docs/index.md") == family("docs/ja/index.md", lambda: SAMPLES["ja"]).number
    assert english("docs/index.md") != family("docs/ja/index.md", lambda: FRENCH).number


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("id", "Instal server dengan pip, lalu jalankan di port yang Anda pilih. Ini adalah cara untuk itu."),
        ("nl", "Installeer de server met pip en start het op een poort van uw keuze. Dat is niet moeilijk."),
        (
            "it",
            "Installa il server con pip e avvialo sulla porta che preferisci. Non è difficile, come vedi.",
        ),
        (
            "hu",
            "Telepítse a szervert a pip segítségével, és indítsa el egy tetszőleges porton, ez nem nehéz.",
        ),
    ],
)
def test_translations_into_languages_with_few_accents_are_told_by_their_common_words(
    code: str, text: str
) -> None:
    assert english("docs/install.md") == family(f"docs/{code}/install.md", lambda: text).number
    assert english("docs/install.md") != family(f"docs/{code}/install.md", lambda: ENGLISH).number


def test_the_original_is_english_or_untagged() -> None:
    assert family("docs/en/install.md", lambda: ENGLISH).original
    assert family("docs/en-US/install.md", lambda: ENGLISH).original
    assert family("install.md", lambda: ENGLISH).original
    assert family("install.en.md", lambda: ENGLISH).original
    assert not family("docs/fr/install.md", lambda: FRENCH).original
    assert not family("install.fr.md", lambda: FRENCH).original
    assert [language(name) for name in ("fr", "PT-br", "zh_Hant", "es-419", "em", "fra", "f", "my-blog")] == [
        "fr",
        "pt",
        "zh",
        "es",
        None,
        None,
        None,
        None,
    ]


def test_english_questions_are_told_from_others_that_share_a_function_word() -> None:
    assert asks_in_english("How do I install the server and start it on a port?")
    assert asks_in_english("what is the difference between these two settings")
    assert asks_in_english("How do I read a session cookie?")
    assert asks_in_english("What is a cookie?")
    for keywords in ("acme-server port config", "cors middleware setup", "Do I need it?", "IS IT SAFE"):
        assert asks_in_english(keywords), keywords  # plain ASCII words, none of another language
    for other in (
        "¿Cómo instale el servidor con pip a un puerto no estándar?",
        "Was passiert, wenn ich den Server mit pip in einem Port installieren?",
        "Comment on installe le serveur avec pip, il y a une erreur",
        "comment installer le serveur",
        "Co to jest i jak to działa?",
        "Hoe kan ik dit even in Python doen?",
        "Ce rol are parametrul in aceasta functie?",
        "Hvordan kan jeg have flere i en",
    ):
        assert not asks_in_english(other), other


def test_translations_take_one_slot_shown_in_english_to_an_english_question(tmp_path: Path) -> None:
    files = {f"docs/{lang}/install.md": text for lang, text in PAGES.items()}
    index = build(tmp_path, {**files, "docs/en/configure.md": OTHER})
    found = index.search("How do I install the server and start it on a port?")
    assert sorted(hit.path for hit in found.results) == ["docs/en/configure.md", "docs/en/install.md"]
    install = next(hit for hit in found.results if hit.path == "docs/en/install.md")
    assert set(install.copies) == set(files) - {"docs/en/install.md"}
    # Keywords of plain ASCII, none of another language, are taken for English too.
    found = index.search("acme-server port config")
    install = next(hit for hit in found.results if hit.path in files)
    assert len(found.results) == 2
    assert install.path == "docs/en/install.md"
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


def test_a_module_page_is_not_hidden_under_its_package_page(tmp_path: Path) -> None:
    files = {
        "notes/socket.md": "# Sockets\n\nA Unix socket connection: bind, listen, accept; reconnect a client "
        "after the server restarts.\n",
        "notes/socket.io.md": "# Socket.IO\n\nThe socket.io client emits events; to reconnect a client after "
        "the server restarts set its reconnection options.\n",
    }
    index = build(tmp_path, files)
    found = index.search("How do I reconnect a socket.io client after the server restarts?")
    assert {hit.path for hit in found.results} == set(files)


FUSED_EN = (
    "# Installing\n\nInstall the server with pip, then start it on a port of your choice. "
    + "Some unrelated filler words about releases and history. " * 8
    + "\n\n"
    + CODE
    + "\n## Background\n\nWhy a daemon listens: sockets, systemd units and service managers.\n"
)
FUSED = {
    "docs/en/install.md": FUSED_EN,
    "docs/fr/install.md": "# Installation\n\nInstallez acme-server avec pip, puis démarrez acme-server "
    "sur le port ; c'est déjà prêt.\n\n" + CODE,
    "docs/de/install.md": "# Installation\n\nInstallieren Sie acme-server mit pip und starten Sie "
    "acme-server auf einem Port für immer; es ist schön.\n\n" + CODE,
    "docs/pt/install.md": "# Instalação\n\nInstale acme-server com pip e inicie acme-server na porta.\n\n"
    + CODE,
    "docs/en/ports.md": "# Ports\n\nacme-server acme-server acme-server pip port port: choose the "
    "acme-server port zyxw.\n",
}


def fused_index(tmp_path: Path) -> tuple[SearchIndex, Nearest]:
    """The FUSED pages, with a stand-in for search by meaning that finds the English page's
    Background passage (which holds none of the queries' words)."""
    index = build(tmp_path, FUSED)
    key = next(key for key, text in index.passages(lambda _: True) if "Background" in text.splitlines()[0])
    return index, lambda _among: [(key, 0.9)]


def test_a_fused_slot_names_each_document_once_and_never_its_own(tmp_path: Path) -> None:
    index, nearest = fused_index(tmp_path)
    for query in ("How do I install the acme-server on a port?", "acme-server install port pip"):
        found = index.search(query, nearest=nearest)
        names = [name for hit in found.results for name in (hit.path, *hit.copies)]
        assert len(names) == len(set(names)), names
        assert set(names) == set(FUSED)


def test_a_fused_slot_keeps_the_translations_its_lexical_hit_named(tmp_path: Path) -> None:
    index, nearest = fused_index(tmp_path)
    found = index.search("acme-server pip port zyxw", nearest=nearest)
    assert {name for hit in found.results for name in (hit.path, *hit.copies)} == set(FUSED)
    install = next(hit for hit in found.results if hit.path.endswith("install.md"))
    if install.path == "docs/en/install.md":  # shown by the passage the words found, not by meaning
        assert install.heading == "Installing"


def test_paging_through_many_translated_pages_ends_and_repeats_nothing(tmp_path: Path) -> None:
    rng = random.Random(1)
    languages = "en fr de es it pt ja ko zh ru pl nl sv tr uk vi id fa he ar cs hu ro el da".split()

    def words(n: int) -> str:
        return " ".join("".join(rng.choice("abcdefghij") for _ in range(7)) for _ in range(n))

    files = {}
    for page in range(100):
        shared = [words(30) for _ in range(10)]
        for lang in languages:
            accent = "" if lang == "en" else " déjà été ça"  # a translation reads as another language
            body = "".join(
                f"## Part {s}\n\nThe server setting: {w} {words(30)}{accent}.\n\n"
                for s, w in enumerate(shared)
            )
            files[f"docs/{lang}/page{page}.md"] = f"# Page {page}\n\n{body}"
    index = build(tmp_path, files)
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None and len(seen) < 1000:
        found = index.search("server setting", limit=10, offset=offset)
        # Only the last page may be empty: a full scan cut short cannot tell whether more follow.
        assert found.results or found.next_offset is None, f"an empty page at {offset} offers another"
        seen += [name for hit in found.results for name in (hit.path, *hit.copies)]
        offset = found.next_offset
    assert offset is None
    assert len(seen) == len(set(seen))
    assert len({path.rsplit("/", 1)[1] for path in seen}) >= 20  # families within the scan's reach


def test_translations_beside_an_english_tree_take_its_slot(tmp_path: Path) -> None:
    files = {
        "guide/install.md": PAGES["en"],
        "fr/guide/install.md": PAGES["fr"],
        "de/guide/install.md": PAGES["de"],
    }
    index = build(tmp_path, {**files, "guide/configure.md": OTHER})
    found = index.search("How do I install the server with pip?")
    assert [hit.path for hit in found.results] == ["guide/install.md", "guide/configure.md"]
    assert set(found.results[0].copies) == {"fr/guide/install.md", "de/guide/install.md"}


def test_versions_that_differ_more_than_near_copies_take_one_slot(tmp_path: Path) -> None:
    releases = {
        "v1.0": "Download the archive, unpack it and run ./install.sh as root; the service starts at boot.",
        "v2.0": "Install the package with your system's package manager; a systemd unit is created for you.",
        "v3.0": "Run the container image with docker run, mounting a volume for the data and a port.",
    }
    files = {f"docs/{v}/install.md": f"# Installing the server\n\n{text}\n" for v, text in releases.items()}
    index = build(
        tmp_path, {**files, "docs/v3.0/backup.md": "# Backups\n\nInstall a cron job for the server.\n"}
    )
    found = index.search("install the server")
    install = [hit for hit in found.results if hit.path.endswith("install.md")]
    assert len(install) == 1
    assert {install[0].path, *install[0].copies} == set(files)

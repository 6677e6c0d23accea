"""Settings: flags, then KB_* environment variables, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.config import DEFAULT_MAX_FILE_BYTES, Settings


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KB_INDEX_DIR", "KB_TOKEN", "KB_ALLOW_ORIGINS", "KB_JOBS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.index_dir == Path("index")
    assert settings.max_file_bytes == DEFAULT_MAX_FILE_BYTES
    assert (settings.token, settings.allow_origins, settings.watch) == (None, [], True)


def test_environment_variables_fill_what_flags_leave_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_INDEX_DIR", "/srv/kb-index")
    monkeypatch.setenv("KB_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("KB_RESCAN_SECONDS", "30")
    monkeypatch.setenv("kb_watch", "false")  # names in any case, values as a shell writes them
    settings = Settings.from_env()
    assert settings.index_dir == Path("/srv/kb-index")
    assert settings.allow_origins == ["https://a.example", "https://b.example"]
    assert settings.rescan_seconds == 30
    assert settings.watch is False


def test_values_given_directly_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_INDEX_DIR", "/srv/kb-index")
    monkeypatch.setenv("KB_ALLOW_ORIGINS", "https://a.example")
    settings = Settings.from_env(index_dir=Path("elsewhere"), allow_origins=["https://c.example"])
    assert (settings.index_dir, settings.allow_origins) == (Path("elsewhere"), ["https://c.example"])


def test_out_of_range_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="max_file_bytes"):
        Settings(max_file_bytes=0)
    monkeypatch.setenv("KB_JOBS", "many")
    with pytest.raises(ValueError, match="jobs"):
        Settings.from_env()


def test_settings_built_in_code_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_INDEX_DIR", "/srv/kb-index")
    assert Settings().index_dir == Path("index")


def test_the_cache_folder_follows_the_environment_given(tmp_path: Path) -> None:
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path)}).cache_dir == tmp_path / "kb"
    assert Settings.from_env({"KB_CACHE_DIR": str(tmp_path / "c")}).cache_dir == tmp_path / "c"

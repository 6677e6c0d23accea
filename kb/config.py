"""Settings, resolved once (flags, then KB_* environment, then defaults) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
MEGABYTE = 1024 * 1024
ENV_PREFIX = "KB_"
# Accepted as input beside the fields: `max_file_mb` (the `--max-file-mb` flag, KB_MAX_FILE_MB) sets
# `max_file_bytes` in the unit people think in.
INPUT_ALIASES = {"max_file_mb": "max_file_bytes"}


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """$XDG_CACHE_HOME/kb, or ~/.cache/kb."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kb"


class Settings(BaseModel):
    """Everything kb's parts need to know; the CLI builds one with `from_env`, tests their own."""

    model_config = ConfigDict(extra="forbid")

    root: Path = Field(default=Path("."), description="The folder of documents")
    index_dir: Path = Field(default=Path("index"), description="Where the Tantivy index lives")
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, ge=1, description="Files larger are skipped")
    jobs: int = Field(default=0, ge=0, le=64, description="Extraction worker processes; 0 means one per core")
    extract_timeout: float = Field(default=30.0, gt=0, description="Seconds one file may take to extract")
    # A pipe round trip to a worker costs about what extracting a small file does: small files go
    # to the workers in batches (a batch that overruns the budget is retried file by file).
    extract_batch: int = Field(
        default=64, ge=1, le=10_000, description="Most small files sent to an extraction worker at once"
    )
    url_base: str | None = Field(default=None, description="Web address where the documents are published")
    token: str | None = Field(default=None, description="Bearer token required on HTTP")
    allow_origins: list[str] = Field(default_factory=list, description="Extra Origins allowed on HTTP")
    allow_hardlinks: bool = Field(
        default=False, description="Index files with a second hard link (it may lead outside the root)"
    )
    watch: bool = True
    # Over HTTP, processes sharing the listening socket and the index: the first syncs, watches and
    # embeds; the others only read, following its commits.
    workers: int = Field(default=1, ge=1, le=32, description="HTTP server processes over the one index")
    rescan_seconds: float = Field(default=600.0, ge=1, description="Interval of the stat-only safety rescan")
    lock_wait: float = Field(default=60.0, ge=0, description="Seconds to wait for the index writer lock")
    # Each commit makes new segments that Tantivy later merges: fewer commits, less work; more
    # commits, less lost to a crash and earlier results while a first index is built.
    commit_every_files: int = Field(default=10_000, ge=1, description="Files written between commits")
    # ...and however few files that is, a sync commits this often, so an interrupted one keeps its work.
    commit_every_seconds: float = Field(default=2.0, gt=0, description="Most seconds of work between commits")
    semantic: bool = Field(
        default=True, description="Search by meaning too (passage vectors); off: lexical ranking only"
    )
    cache_dir: Path = Field(
        default_factory=lambda: default_cache_dir(os.environ),
        description="Where kb keeps what it prepares once per machine (the semantic model)",
    )
    log_format: Literal["text", "json"] = "text"
    debug: bool = Field(default=False, description="Verbose logs, and tracebacks on errors")

    @model_validator(mode="before")
    @classmethod
    def _megabytes(cls, values: Any) -> Any:
        if isinstance(values, dict) and "max_file_mb" in values:
            values = dict(values)
            given = values.pop("max_file_mb")
            try:
                mb = float(given)
            except (TypeError, ValueError):
                mb = 0.0
            if not mb > 0:
                raise ValueError(f"max_file_mb must be a number of megabytes above 0, not {given!r}")
            values["max_file_bytes"] = int(mb * MEGABYTE)
        return values

    @field_validator("allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # The environment gives "https://a https://b" (or comma-separated), not a list.
        return value.replace(",", " ").split() if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **values: Any) -> Settings:
        """Settings from `values`, then KB_<FIELD> environment variables (any case), then defaults.

        The one place the environment is read: the CLI passes its flags as `values`.

        Raises:
            pydantic.ValidationError: a value is malformed or out of range (the message names it).
        """
        environ = os.environ if environ is None else environ
        by_name = {key.upper(): value for key, value in environ.items()}
        found = {
            name: by_name[ENV_PREFIX + name.upper()]
            for name in (*cls.model_fields, *INPUT_ALIASES)
            if ENV_PREFIX + name.upper() in by_name
        }
        for alias, name in INPUT_ALIASES.items():
            if alias in values or name in values:  # given directly: neither spelling comes from the env
                found.pop(alias, None)
                found.pop(name, None)
        # The cache's default comes from the same environment ($XDG_CACHE_HOME, $HOME) as the rest.
        found.setdefault("cache_dir", str(default_cache_dir(environ)))
        return cls(**{**found, **values})

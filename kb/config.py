"""Settings, resolved once (flags, then KB_* environment, then defaults) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024


class Settings(BaseSettings):
    """Everything kb's parts need to know; the CLI builds one, tests build their own."""

    model_config = SettingsConfigDict(env_prefix="KB_", extra="ignore")

    root: Path = Field(default=Path("."), description="The folder of documents")
    index_dir: Path = Field(default=Path("index"), description="Where the Tantivy index lives")
    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, ge=1, description="Files larger are skipped")
    jobs: int = Field(default=0, ge=0, description="Extraction worker processes; 0 means one per core")
    extract_timeout: float = Field(default=30.0, gt=0, description="Seconds one file may take to extract")
    url_base: str | None = Field(default=None, description="Web address where the documents are published")
    token: str | None = Field(default=None, description="Bearer token required on HTTP")
    # NoDecode: the environment gives "https://a https://b", not a JSON list.
    allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra Origins allowed on HTTP"
    )
    watch: bool = True
    rescan_seconds: float = Field(default=600.0, gt=0, description="Interval of the stat-only safety rescan")
    lock_wait: float = Field(default=60.0, ge=0, description="Seconds to wait for the index writer lock")
    log_format: Literal["text", "json"] = "text"

    @field_validator("allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return value.replace(",", " ").split() if isinstance(value, str) else value

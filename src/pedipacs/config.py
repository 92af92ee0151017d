"""Settings: the only reader of the environment.

Every field comes from a `PEDIPACS_<FIELD>` environment variable, a TOML file named by
`PEDIPACS_CONFIG_FILE` (or `pedipacs serve --config`), or its default, in that order of precedence
(environment first).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class DuplicatePolicy(StrEnum):
    """What to do when an object arrives whose SOP Instance UID is stored with other content.

    An identical re-send is always acknowledged without a second copy.
    """

    REJECT = "reject"  # refuse the new object, keep the stored one
    KEEP_NEWEST = "keep-newest"  # replace the stored object with the new one
    KEEP_FIRST = "keep-first"  # acknowledge, keep the stored one, drop the new one


class Settings(BaseSettings):
    """pedipacs configuration. Field descriptions are the operator documentation."""

    model_config = SettingsConfigDict(env_prefix="PEDIPACS_", extra="forbid")

    data_dir: Path = Field(
        Path("data"), description="Folder for the embedded database and the stored images."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the index database; default: SQLite file "
        "`<data_dir>/pedipacs.sqlite3`. Example: `postgresql+psycopg://user@host/db`.",
    )
    storage_dir: Path | None = Field(
        None, description="Folder for image bytes; default: `<data_dir>/blobs`."
    )
    host: str = Field("127.0.0.1", description="Address the DICOM and HTTP listeners bind to.")
    ae_title: str = Field("PEDIPACS", description="DICOM Application Entity title of this node.")
    dicom_port: int = Field(11112, ge=0, le=65535, description="DICOM (DIMSE) port.")
    dicom_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="DIMSE worker processes sharing the DICOM port; 0 means one per CPU core.",
    )
    http_port: int = Field(
        8080, ge=0, le=65535, description="HTTP port (DICOMweb, viewer, pages, health, metrics)."
    )
    viewer_dir: Path = Field(
        Path("var/viewer"),
        description="Folder holding the OHIF viewer's published build (`make viewer` fetches it); "
        "served under `/viewer`.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call DICOMweb from another site's pages (CORS), e.g. "
        "`https://viewer.hospital.example`; `*` allows any. Empty: same origin only.",
    )
    max_pdu_size: int = Field(
        262144,
        ge=0,
        description="Largest P-DATA PDU pedipacs accepts, in bytes (0: unlimited, not advised).",
    )
    max_object_size: int = Field(
        2 * 1024**3,
        gt=0,
        description="Largest DICOM object accepted, in bytes; a peer sending more without an "
        "answer is disconnected while the bytes arrive.",
    )
    max_associations: int = Field(
        32, gt=0, description="Simultaneous DICOM associations per worker process."
    )
    network_timeout: float = Field(
        60.0, gt=0, description="Seconds of silence after which a DICOM association is aborted."
    )
    accept_unknown_calling_aes: bool = Field(
        False,
        description="Accept DICOM associations from calling AE titles that are not in the peer "
        "registry (`pedipacs peer add`), with every operation. Off by default: unknown AEs are "
        "refused and the refusal audited. Turn on only for a first setup.",
    )
    duplicate_policy: DuplicatePolicy = Field(
        DuplicatePolicy.REJECT,
        description="Same SOP Instance UID with different content: `reject`, `keep-newest` or "
        "`keep-first`. An identical re-send is always acknowledged without a second copy.",
    )
    orphan_grace_seconds: float = Field(
        300.0,
        ge=0,
        description="Blobs without an index row older than this are swept at start-up "
        "(left over from a crash between writing bytes and indexing them).",
    )
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR.")

    @field_validator("ae_title")
    @classmethod
    def _ae_title_is_valid(cls, value: str) -> str:
        value = value.strip()
        if not 0 < len(value) <= 16 or "\\" in value or not value.isascii():
            raise ValueError("an AE title has 1 to 16 ASCII characters and no backslash")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pedipacs.sqlite3').resolve()}"

    @property
    def resolved_storage_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").resolve()

    @property
    def resolved_dicom_workers(self) -> int:
        return self.dicom_workers or (os.cpu_count() or 1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (pydantic API)
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (pydantic API)
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("PEDIPACS_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides, the environment and an optional TOML file."""
    if config_file is not None:
        os.environ["PEDIPACS_CONFIG_FILE"] = str(config_file)
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)

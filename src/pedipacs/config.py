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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    host: str = Field("127.0.0.1", description="Address the DICOM, HTTP and HL7 listeners bind to.")
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
    tls_certificate_file: Path | None = Field(
        None,
        description="PEM certificate (with its chain) of this node. When set with "
        "`tls_key_file`, HTTP is served over HTTPS and DICOM TLS listens on `dicom_tls_port`.",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of `tls_certificate_file`."
    )
    tls_ca_file: Path | None = Field(
        None,
        description="PEM certificates of the authorities whose client certificates DICOM TLS "
        "peers must present (mutual authentication, PS3.15 B.1). Empty: no client certificate "
        "is asked for.",
    )
    dicom_tls_port: int = Field(
        2762,
        ge=0,
        le=65535,
        description="DICOM over TLS port (PS3.15 Annex B, BCP 195), used when a certificate "
        "is configured.",
    )
    session_idle_minutes: float = Field(
        15.0, gt=0, description="A signed-in page session ends after this much inactivity."
    )
    session_max_hours: float = Field(
        12.0, gt=0, description="A page session ends this long after sign-in, active or not."
    )
    signin_max_failures: int = Field(
        5, gt=0, description="Failed sign-ins in a row after which an account is locked."
    )
    signin_lockout_minutes: float = Field(
        15.0, gt=0, description="How long a locked account stays locked."
    )
    signin_attempts_per_minute: int = Field(
        10,
        gt=0,
        description="Sign-in attempts accepted per minute from one client address; more get "
        "HTTP 429.",
    )
    break_glass_minutes: float = Field(
        60.0,
        gt=0,
        description="How long a break-the-glass access to a patient outside one's care lasts.",
    )
    oidc_issuer: str | None = Field(
        None,
        description="OpenID Connect issuer URL of the hospital's identity provider (Keycloak, "
        "Entra ID, ...); its `/.well-known/openid-configuration` is read at the first sign-in "
        "through it. Empty: local accounts only.",
    )
    oidc_client_id: str | None = Field(None, description="Client ID registered at the issuer.")
    oidc_client_secret: str | None = Field(None, description="Client secret for the client ID.")
    oidc_roles_claim: str = Field(
        "roles",
        description="ID token claim listing the user's pedipacs roles (administrator, "
        "radiologist, technologist, referring-clinician, auditor).",
    )
    audit_syslog_host: str | None = Field(
        None,
        description="ATNA audit record repository to which audit records are sent as RFC 5424 "
        "syslog messages (DICOM PS3.15 A.5 XML). Empty: no export.",
    )
    audit_syslog_port: int = Field(6514, ge=1, le=65535, description="ATNA collector port.")
    audit_syslog_tls: bool = Field(
        True, description="Send ATNA messages over TLS (RFC 5425); off: plain TCP (RFC 6587)."
    )
    audit_syslog_ca_file: Path | None = Field(
        None, description="PEM authorities trusted for the ATNA collector's certificate."
    )
    max_query_results: int = Field(
        1000,
        gt=0,
        description="Most matches one C-FIND answers; QIDO-RS pages at this size.",
    )
    max_request_body: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest HTTP request body accepted outside STOW-RS (forms, JSON), in bytes.",
    )
    hl7_port: int = Field(
        2575,
        ge=0,
        le=65535,
        description="HL7 v2 MLLP port (orders and patient registrations); 0: no HL7 listener.",
    )
    hl7_tls_port: int = Field(
        2576,
        ge=0,
        le=65535,
        description="HL7 v2 MLLP over TLS port, used when a certificate is configured.",
    )
    hl7_senders: list[str] = Field(
        default_factory=list,
        description="Sending applications (MSH-3) whose HL7 messages are applied, e.g. "
        '`["EPIC", "LAB"]`; `*` accepts any. Others get an AR acknowledgement, audited. Empty '
        "(the default): none, until the hospital's interface engine is named here.",
    )
    max_hl7_message: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest HL7 message accepted, in bytes; a longer frame closes the connection.",
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
    commitment_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the Storage Commitment worker looks for reports to send "
        "(requests taken by another DIMSE worker process, retries that became due).",
    )
    commitment_retry_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait after a Storage Commitment report could not be delivered; it doubles "
        "with each failed attempt, up to 10 minutes.",
    )
    commitment_max_attempts: int = Field(
        30,
        gt=0,
        description="Delivery attempts of a Storage Commitment report before it is marked "
        "failed (30: about 4 hours of retries).",
    )
    hl7_report_receivers: list[str] = Field(
        default_factory=list,
        description="Where released reports go as HL7 ORU^R01 over MLLP, each `host:port`, e.g. "
        '`["his.example.org:6661"]`. Each report is sent to each receiver exactly once per '
        "release (preliminary, final, addendum), retried while the receiver is down.",
    )
    hl7_receiving_facility: str = Field(
        "",
        description="MSH-6 of outgoing ORU^R01 messages (the hospital's facility name, if the HIS "
        "asks for one).",
    )
    store_report_objects: bool = Field(
        True,
        description="Store each signed report (final, and again with each addendum) in its study "
        "as an Encapsulated PDF, so any DICOM viewer shows it beside the images.",
    )
    reading_claim_minutes: float = Field(
        30.0,
        gt=0,
        description="How long an exam opened for reporting stays claimed by its reader "
        "(renewed by every save) before it returns to the reading worklist.",
    )
    intensive_care_units: list[str] = Field(
        default_factory=lambda: ["ED", "ER", "NICU", "PICU", "ICU", "CICU", "PCICU"],
        description="Points of care (HL7 PV1-3.1) and ordering departments whose exams are read "
        "right after STAT ones, with the emergency patients.",
    )
    turnaround_target_minutes: dict[str, int] = Field(
        default_factory=lambda: {"STAT": 60, "ASAP": 240, "ROUTINE": 1440},
        description="Target time from images arrived to the final report, by order priority, "
        "in minutes; exams past it are listed on the turnaround page.",
    )
    timezone: str = Field(
        "UTC",
        description="The hospital's time zone (IANA name, e.g. `Europe/Paris`): turnaround times "
        "count day, night and weekend shifts in it.",
    )
    job_poll_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the background job worker looks for due jobs (jobs enqueued on "
        "this node start at once).",
    )
    job_retry_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait after a background job's failed attempt; it doubles with each failed "
        "attempt, up to 10 minutes.",
    )
    job_max_attempts: int = Field(
        40,
        gt=0,
        description="Attempts of a background job (e.g. an ORU^R01 to a receiver that is down) "
        "before it is marked failed; the wait doubles from 5 s to at most 10 minutes (40: about "
        "6 hours).",
    )
    log_level: str = Field("INFO", description="Logging level: DEBUG, INFO, WARNING, ERROR.")

    @field_validator("ae_title")
    @classmethod
    def _ae_title_is_valid(cls, value: str) -> str:
        value = value.strip()
        if not 0 < len(value) <= 16 or "\\" in value or not value.isascii():
            raise ValueError("an AE title has 1 to 16 ASCII characters and no backslash")
        return value

    @field_validator("hl7_report_receivers")
    @classmethod
    def _receivers_are_host_port(cls, value: list[str]) -> list[str]:
        for receiver in value:
            host, _, port = receiver.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{receiver!r}: an HL7 receiver is `host:port`")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_is_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @property
    def tls_enabled(self) -> bool:
        return self.tls_certificate_file is not None and self.tls_key_file is not None

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

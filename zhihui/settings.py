"""Settings: one pydantic model tree, loaded once by :func:`load_settings` and passed down.

Sources, strongest first: keyword overrides, environment variables (``ZHIHUI_`` prefix, ``__``
between nested names, e.g. ``ZHIHUI_RELAY__ICE_HOST_ADDRESSES='["127.0.0.1"]'``), the TOML file
named by ``ZHIHUI_CONFIG`` (default ``config/zhihui.toml`` when it exists), then the defaults
below, which run everything on one machine with SQLite, an in-process bus and ``recordings/``.
"""

from __future__ import annotations

import enum
import itertools
import os
import zoneinfo
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AlertSettings",
    "AuthSettings",
    "DutyPost",
    "DutySettings",
    "Environment",
    "EscalationSettings",
    "HttpSettings",
    "IceServer",
    "RecordingSettings",
    "RelayNodeSettings",
    "RelaySettings",
    "Settings",
    "WorkingPeriod",
    "load_settings",
]

DEFAULT_CONFIG_FILE = Path("config/zhihui.toml")
MIN_RETENTION_DAYS = 184
"""Six calendar months at their longest (1 July to 1 January): recordings are kept at least that."""


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    public_url: str | None = Field(
        None, description="Base URL people reach the server at; derived from host and port if unset."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra Origins allowed on the websocket besides the server's own.",
    )


class AuthSettings(_Section):
    jwt_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for access tokens. Unset: a random one is made and kept in data_dir.",
    )
    access_token_minutes: int = Field(15, ge=1, le=15, description="Access token lifetime.")
    refresh_token_hours: float = Field(
        12.0,
        gt=0,
        le=7 * 24,
        description="How long a sign-in lasts: refresh tokens renew the access token until this long "
        "after the password was given; then the person signs in again.",
    )
    publish_grant_minutes: int = Field(
        60, ge=1, le=24 * 60, description="How long a publish grant may be used to start publishing."
    )
    view_grant_minutes: int = Field(10, ge=1, le=24 * 60, description="View grant lifetime.")
    login_window_seconds: int = Field(
        300, ge=10, le=24 * 3600, description="The window in which failed sign-ins are counted."
    )
    login_failures_per_username: int = Field(
        5, ge=1, le=1000, description="Failed sign-ins for one username in the window before it is held."
    )
    login_failures_per_source: int = Field(
        20, ge=1, le=10000, description="Failed sign-ins from one address in the window before it is held."
    )
    grant_private_key_file: Path | None = Field(
        None,
        description="Ed25519 private key (PEM) that signs relay grants. Unset: made and kept in data_dir.",
    )


class IceServer(_Section):
    urls: list[str] = Field(description="stun: or turn: URLs.")
    username: str | None = None
    credential: SecretStr | None = None


class RelaySettings(_Section):
    ice_servers: list[IceServer] = Field(
        default_factory=list,
        description="STUN/TURN servers. None by default: no traffic to any public STUN server.",
    )
    ice_host_addresses: list[str] = Field(
        default_factory=list,
        description="Local addresses to offer host candidates on. Empty: every interface but loopback.",
    )
    udp_port_range: tuple[int, int] | None = Field(
        None,
        description="First and last UDP port for media (each session takes one per address), as a "
        "firewall would open them, e.g. [40000, 40999]. None: any port the system gives.",
    )

    @field_validator("udp_port_range")
    @classmethod
    def _port_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1024 <= value[0] <= value[1] <= 65535:
            raise ValueError("give the first and last port, 1024 <= first <= last <= 65535")
        return value
    viewer_queue_frames: int = Field(
        90,
        ge=8,
        le=1000,
        description="Frames kept for a viewer while its connection comes up; then it waits for a keyframe.",
    )
    keyframe_request_interval_ms: int = Field(
        500, ge=50, le=5000, description="At most one keyframe request per publisher this often."
    )
    health_checks_per_second: float = Field(
        2.0,
        gt=0,
        le=100,
        description="Pictures decoded per second, all streams together, to check video health (R8). "
        "Each stream is checked at most every 2 s; with many streams, each less often.",
    )
    max_sdp_bytes: int = Field(64 * 1024, description="Largest SDP body accepted by WHIP/WHEP.")
    reconnect_grace_seconds: float = Field(
        20.0,
        ge=0,
        le=600,
        description="How long a dropped publisher's stream waits for it (same grant) before it ends.",
    )
    nack_retry_ms: int = Field(
        60, ge=10, le=1000, description="Ask a publisher again for a lost packet this often."
    )
    keyframe_after_ms: int = Field(
        150, ge=20, le=5000, description="Ask for a keyframe when a hole in the video lasts this long."
    )
    max_wait_ms: int = Field(
        300, ge=20, le=5000, description="Give up a hole in the video after this; wait for a keyframe."
    )
    public_url: str | None = Field(
        None, description="Where clients reach the relay. Unset: '/relay' on the dispatch server."
    )


class RelayNodeSettings(_Section):
    """Relays run as processes of their own (``zhihui relay``, R18), reporting to a dispatch server."""

    in_process: bool = Field(
        True,
        description="Dispatch server: run the relay inside it, at '/relay' (one machine). False: relays "
        "run apart (`zhihui relay`); set relay.public_url to where clients reach the relay.",
    )
    name: str = Field(
        "relay-1",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Relay: this node's name, unique among the relays of one dispatch server. When it "
        "starts, the dispatch server ends the streams it still holds live on this node.",
    )
    dispatch_url: str | None = Field(
        None, description="Relay: the dispatch server's base URL, where it reports its events."
    )
    secret: SecretStr | None = Field(
        None,
        description="Shared by the dispatch server and its relays: a relay proves itself with it when it "
        "reports events. Unset on the dispatch server: it takes no reports from relays run apart.",
    )
    grant_public_key_file: Path | None = Field(
        None,
        description="Relay: the dispatch server's grant public key (PEM). Unset: fetched from the "
        "dispatch server at start (GET /api/grants/public-key).",
    )
    retry_max_seconds: float = Field(
        5.0, gt=0, le=300, description="Relay: the longest wait between tries to reach the dispatch server."
    )
    max_pending_events: int = Field(
        10_000,
        ge=10,
        le=1_000_000,
        description="Relay: events kept while the dispatch server is unreachable; past it the oldest are "
        "dropped, logged and counted (the catalog is rebuilt from the manifests on the dispatch's start).",
    )

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the relay secret must be at least 16 characters")
        return value

    def missing_to_run_apart(self) -> str | None:
        """What a relay run as a node of its own (``zhihui relay``) lacks to report, or None."""
        if not self.dispatch_url:
            return "set relay_node.dispatch_url: the dispatch server this relay reports to"
        if self.secret is None:
            return "set relay_node.secret: the secret shared with the dispatch server (the same value there)"
        return None


class RecordingSettings(_Section):
    root: Path = Field(Path("recordings"), description="Archive root.")
    segment_seconds: float = Field(
        10.0, gt=0, description="Cut a new segment on the first keyframe after this."
    )
    fsync_seconds: float = Field(
        1.0,
        ge=0,
        description="Force the open segment onto the disk this often (0: after every frame). "
        "Bounds what a power cut loses; a crash of the relay alone loses only the unwritten cluster.",
    )
    min_free_gib: float = Field(
        5.0,
        ge=0,
        description="Alert the command room when the archive's disk has less free space than this.",
    )
    retention_days: int = Field(
        MIN_RETENTION_DAYS,
        ge=MIN_RETENTION_DAYS,
        le=100 * 366,
        description="Keep every recording at least this long after it ends (R2: at least 6 months, "
        "the minimum); an evidence hold keeps it until the hold is lifted. Nothing is ever deleted "
        "automatically: a deletion is asked for, and refused inside this or under a hold.",
    )


class EscalationSettings(_Section):
    leader_after_seconds: float = Field(
        300.0,
        gt=0,
        le=7 * 24 * 3600,
        description="After escalating a missed acknowledgement to the incident's commander (or the "
        "issuer), wait this long for it before escalating to the leader on duty.",
    )
    poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often each dispatch process looks for timers other processes started; bounds "
        "how late an escalation can fire.",
    )


class WorkingPeriod(_Section):
    """One stretch of working hours, in the court's local time."""

    start: time = Field(description="When it begins, e.g. 08:30.")
    end: time = Field(description="When it ends (exclusive), e.g. 12:00; after ``start`` on the same day.")

    @model_validator(mode="after")
    def _ordered(self) -> WorkingPeriod:
        if self.end <= self.start:
            raise ValueError(f"a working period ends after it starts ({self.start} - {self.end})")
        return self


class DutyPost(_Section):
    """A seat of the duty roster (值班岗位), e.g. the command desk or the leader on duty."""

    key: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,47}$",
        description="Stable name used by the API, the roster and alerts (subject ``seat:<key>``).",
    )
    name: str = Field(
        min_length=1, max_length=64, description="What people read, e.g. 'Command desk 指挥席'."
    )
    required: bool = Field(
        False, description="Must be manned during working hours: nobody signed in raises an empty_seat alert."
    )
    roles: list[Literal["duty_officer", "commander", "leader", "admin"]] = Field(
        default_factory=list,
        description="Roles that may be rostered on it and sign in to it. Empty: any of these four.",
    )


def _default_posts() -> list[DutyPost]:
    return [
        DutyPost(key="command-desk", name="Command desk 指挥席", required=True),
        DutyPost(key="leader-on-duty", name="Leader on duty 值班领导", roles=["leader"]),
    ]


class DutySettings(_Section):
    """Duty (R10): the court's working hours and the posts that are manned."""

    time_zone: str = Field(
        "Asia/Shanghai", description="The court's IANA time zone: working hours and roster days are in it."
    )
    working_days: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        description="ISO weekdays with working hours (1 = Monday ... 7 = Sunday).",
    )
    working_hours: list[WorkingPeriod] = Field(
        default_factory=lambda: [
            WorkingPeriod(start=time(8, 30), end=time(12, 0)),
            WorkingPeriod(start=time(14, 0), end=time(17, 30)),
        ],
        description="The periods of a working day, in local time; the gap between them (lunch) is not.",
    )
    holidays: list[date] = Field(
        default_factory=list, description="Dates without working hours although on a working day (holidays)."
    )
    extra_working_days: list[date] = Field(
        default_factory=list, description="Dates with working hours although not on a working day (调休)."
    )
    posts: list[DutyPost] = Field(default_factory=_default_posts, description="The posts of the roster.")
    leader_post: str | None = Field(
        "leader-on-duty",
        description="The post whose holder gets second-level escalations (the leader on duty). "
        "Unset, or nobody on it: the first active leader.",
    )
    empty_seat_grace_seconds: float = Field(
        300.0,
        ge=0,
        le=24 * 3600,
        description="How long a required post may stay empty in working hours before an alert is raised.",
    )
    late_after_seconds: float = Field(
        300.0, ge=0, le=24 * 3600, description="A sign-in this long after the shift starts is marked late."
    )
    early_sign_in_seconds: float = Field(
        1800.0,
        ge=0,
        le=24 * 3600,
        description="How long before a shift starts a sign-in already counts for it.",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("working_days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day < 1 or day > 7 for day in value):
            raise ValueError("working days are ISO weekdays, 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> DutySettings:
        keys = [post.key for post in self.posts]
        if len(set(keys)) != len(keys):
            raise ValueError("duty post keys must be unique")
        if self.leader_post is not None and self.leader_post not in keys:
            raise ValueError(f"leader_post {self.leader_post!r} is not one of the posts {keys}")
        periods = sorted(self.working_hours, key=lambda period: period.start)
        if any(a.end > b.start for a, b in itertools.pairwise(periods)):
            raise ValueError("working periods overlap")
        self.working_hours = periods
        return self


class AlertSettings(_Section):
    check_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often the alert rules run (a stream going down runs them at once as well).",
    )
    no_stream_seconds: float = Field(
        60.0,
        gt=0,
        le=24 * 3600,
        description="During a field operation that requires streaming, alert when a team member has had "
        "no live stream for longer than this.",
    )


class PositionSettings(_Section):
    flush_seconds: float = Field(
        1.0,
        gt=0,
        le=1.0,
        description="Accepted positions are stored in one batch this often: a crash loses at most this "
        "many seconds of them; the wall gets each officer's newest once per batch.",
    )
    max_future_seconds: float = Field(
        300.0,
        ge=0,
        le=24 * 3600,
        description="Refuse a fix whose device time is this far ahead of the server's clock.",
    )
    max_age_hours: float = Field(
        72.0,
        gt=0,
        le=24 * 366,
        description="Refuse a fix older than this (a device back from offline sends what it kept).",
    )


class Settings(BaseSettings):
    """Everything Zhihui can be told. Every field can be set by environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="ZHIHUI_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Field(Path("var"), description="Where the SQLite database and generated keys live.")
    database_url: str | None = Field(None, description="SQLAlchemy async URL. Unset: SQLite in data_dir.")
    redis_url: str | None = Field(None, description="Redis for the bus across processes. Unset: in-process.")
    redis_prefix: str = Field(
        "zhihui:",
        pattern=r"^[A-Za-z0-9:._-]{1,64}$",
        description="Prefix of every Redis channel and key, so that deployments can share one Redis.",
    )
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    relay: RelaySettings = RelaySettings()
    relay_node: RelayNodeSettings = RelayNodeSettings()
    recording: RecordingSettings = RecordingSettings()
    escalation: EscalationSettings = EscalationSettings()
    alerts: AlertSettings = AlertSettings()
    duty: DutySettings = DutySettings()
    positions: PositionSettings = PositionSettings()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value and value.startswith("postgresql://"):
            return "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if value and value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.removeprefix("sqlite:///")
        return value

    @model_validator(mode="after")
    def _relays_apart(self) -> Settings:
        if not self.relay_node.in_process:
            if self.relay.public_url is None:
                raise ValueError(
                    "with relay_node.in_process = false, set relay.public_url: where clients reach the relay"
                )
            if self.relay_node.secret is None:
                raise ValueError(
                    "with relay_node.in_process = false, set relay_node.secret: relays report with it"
                )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'zhihui.db'}"

    @property
    def public_url(self) -> str:
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host = "127.0.0.1" if self.http.host in ("0.0.0.0", "::") else self.http.host
        return f"http://{host}:{self.http.port}"

    @property
    def relay_url(self) -> str:
        """The relay's base URL as clients are told it (relative when it is mounted here)."""
        return (self.relay.public_url or "/relay").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("ZHIHUI_CONFIG", DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Load the settings once, at start-up; pass the result down."""
    return Settings(**overrides)

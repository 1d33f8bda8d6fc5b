"""The configuration model: one TOML file, validated strictly, frozen once loaded.

Every section forbids unknown keys (a misspelt key is an error that names it, not a silent
default). Durations are strings such as ``"500ms"``, ``"10s"``, ``"5m"``, ``"7d"``; sizes are
strings such as ``"512MB"`` or ``"2GiB"``. Validation performs no network I/O.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    ByteSize,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from plantsync.config.plant import (
    JobControlConfig,
    MesConfig,
    OpcUaServerConfig,
    PollEndpointConfig,
    check_crontab,
)
from plantsync.config.types import Duration, Section, Tls
from plantsync.config.uplink import UplinkConfig
from plantsync.contracts.envelope import SITE_PATTERN
from plantsync.contracts.inbound import KEPT_PREFIX_BYTES


class SiteConfig(Section):
    """Who this agent is: one agent per plant."""

    id: str = Field(pattern=SITE_PATTERN, description="site id: a topic level on the hub")
    name: str = ""
    timezone: str | None = Field(
        default=None,
        description="the plant's IANA time zone (e.g. 'Europe/Berlin') for every wall-clock"
        " schedule (retention, cron polls); unset: the server's local time zone",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, timezone: str | None) -> str | None:
        if timezone is not None:
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    f"{timezone!r} is not an IANA time zone such as 'Europe/Berlin'"
                ) from exc
        return timezone

    @property
    def zone(self) -> ZoneInfo | None:
        """The plant's time zone; None: the server's local one."""
        return None if self.timezone is None else ZoneInfo(self.timezone)


def _joined_urls(value: object) -> object:
    """A TOML list of URLs becomes one comma-separated string, the form an environment
    variable (PLANTSYNC_HUB__URL) can carry too."""
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return ", ".join(value)
    return value


def _check_mqtt_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Refused without quoting the url: it holds a secret in a plain, logged string.
        raise ValueError("put credentials in username and password, not in the url")
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError as exc:
        raise ValueError(f"{url!r} has an invalid port") from exc


class MqttProtocol(StrEnum):
    """The MQTT version offered to the hub; AUTO negotiates (drivers/mqtt/negotiation.py)."""

    AUTO = "auto"
    V5 = "5"
    V311 = "3.1.1"


class HubConfig(Section):
    """The MQTT hub at headquarters (or the site broker that bridges to it)."""

    url: Annotated[str, BeforeValidator(_joined_urls)] = Field(
        description="mqtt://host:port or mqtts://host:port; for a broker cluster a list of its"
        " nodes (or one string, comma-separated): the agent moves to the next when one fails"
    )
    protocol: MqttProtocol = Field(
        default=MqttProtocol.AUTO,
        description="'auto': MQTT 5, else 3.1.1 when the broker does not accept 5; or '5', '3.1.1'",
    )
    client_id: str | None = Field(
        default=None, description="stable id for the persistent session; default plantsync-<site>"
    )
    topic_prefix: str = "plantsync/v1"
    username: str | None = None
    password: SecretStr | None = None
    tls: Tls | None = None
    keepalive: Duration = timedelta(seconds=30)
    connect_timeout: Duration = timedelta(seconds=10)
    session_expiry: Duration = Field(
        default=timedelta(days=7),
        description="MQTT 5 session expiry; the broker queues for this (3.1.1: the broker decides)",
    )
    max_inflight: int = Field(default=100, ge=1, le=65535, description="unacked QoS 1 publishes")
    stall_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="connected but no PUBACK for this long while messages wait: reconnect",
    )

    @field_validator("url")
    @classmethod
    def _url_is_mqtt(cls, url: str) -> str:
        urls = [part.strip() for part in url.split(",")]
        for one in urls:
            _check_mqtt_url(one)
        if len({urlsplit(one).scheme for one in urls}) > 1:
            raise ValueError("mqtt:// and mqtts:// cannot be mixed: one TLS setting serves all")
        return ", ".join(urls)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_plain(cls, prefix: str) -> str:
        if not prefix or any(char in prefix for char in "+#") or prefix.strip("/") != prefix:
            raise ValueError("must be non-empty, without '+', '#' or a leading/trailing '/'")
        return prefix

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL of the hub, in the order given (one, or a cluster's nodes)."""
        return tuple(self.url.split(", "))

    @property
    def host(self) -> str:
        """The host of the first URL (the only one, unless the hub is a list)."""
        return urlsplit(self.urls[0]).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.urls[0])
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.urls[0]).scheme == "mqtts" or self.tls is not None


class ApiConfig(Section):
    """The agent's local HTTP API and status page."""

    host: str = Field(
        default="127.0.0.1", description="bind address; anything but loopback needs a token"
    )
    port: int = Field(default=8470, ge=0, le=65535, description="0 picks a free port")
    token: SecretStr | None = Field(
        default=None, description="bearer token for state-changing calls (and any non-loopback)"
    )
    max_body_size: ByteSize = Field(
        default=ByteSize(1024**2), ge=1024, description="a larger request body is refused (413)"
    )
    max_url_size: int = Field(
        default=8 * 1024, ge=256, le=1024**2, description="a longer request target is 414"
    )
    max_header_size: int = Field(
        default=32 * 1024, ge=1024, le=1024**2, description="larger request headers are 431"
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="open connections beyond this are answered 503"
    )

    @model_validator(mode="after")
    def _token_guards_the_network(self) -> Self:
        # The reasons never quote the token: config errors are printed and logged.
        if self.token is not None and len(self.token.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"token must have at least {MIN_TOKEN_LENGTH} characters"
                " (e.g. the output of 'openssl rand -hex 32')"
            )
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not loopback: set token (better: PLANTSYNC_API__TOKEN),"
                " or bind to 127.0.0.1"
            )
        return self


MIN_TOKEN_LENGTH = 16
"""A bearer token shorter than this could be guessed; the API has no rate limit."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it counts as the network


class ScheduleConfig(Section):
    """How schedule changes from HQ are decided at the plant."""

    frozen_horizon: Duration = Field(
        default=timedelta(hours=4),
        description="a change to an order starting within this long waits for approval",
    )
    quantity_threshold: Decimal = Field(
        default=Decimal(10), ge=0, description="percent; a larger quantity change waits"
    )
    max_message_size: ByteSize = Field(
        default=ByteSize(256 * 1024), description="larger down messages are dead-lettered"
    )
    retry_initial_delay: Duration = timedelta(seconds=1)
    retry_max_delay: Duration = timedelta(seconds=60)


class StoreConfig(Section):
    """The local SQLite store that makes every message durable first."""

    path: Path = Path("/var/lib/plantsync/store.db")
    max_size: ByteSize = Field(
        default=ByteSize(1024**3), description="cap on the outbox; telemetry is evicted first"
    )
    commit_batch: int = Field(
        default=500, ge=1, description="group commit: at most this many rows per transaction"
    )
    archive_max_age: Duration = Field(
        default=timedelta(hours=24),
        description="keep messages the hub acknowledged this long, for 'plantsync buffer"
        " replay'; '0s' turns the archive off",
    )
    archive_max_size: ByteSize | None = Field(
        default=None, description="cap on the sent archive; default a tenth of max_size"
    )
    keep_processed: Duration = Field(
        default=timedelta(days=7),
        description="settled inbox rows (applied, rejected, failed) are kept this long",
    )
    keep_seen_ids: Duration = Field(
        default=timedelta(days=30),
        description="message ids remembered to drop redeliveries; at least hub.session_expiry",
    )
    keep_dead_letters: Duration = Field(default=timedelta(days=30))
    max_dead_letters: int = Field(
        default=10_000, ge=1, description="row cap on dead letters; the oldest go first"
    )
    keep_idempotency_keys: Duration = Field(
        default=timedelta(days=7),
        description="a retry of a confirmation or order status under the same key is answered"
        " with the first answer this long",
    )
    dead_letter_max_size: ByteSize = Field(
        default=ByteSize(KEPT_PREFIX_BYTES),
        ge=1024,
        description="a dead letter keeps at most this much of a message, with its whole size"
        " and sha256; dead letters count toward max_size",
    )
    retention_schedule: str = Field(
        default="30 3 * * *",
        description="when pruning runs: cron 'minute hour day month weekday', local time",
    )
    max_dead_letter_bytes: ByteSize | None = Field(
        default=None,
        description="dead letters hold at most this much of max_size; beyond, the oldest are"
        " evicted (counted, logged); default a tenth of max_size",
    )
    keep_closed_orders: Duration = Field(
        default=timedelta(days=30),
        description="an order cancelled by HQ, or ended, aborted or finally confirmed at the"
        " plant, leaves the last-known-good schedule this long after",
    )
    keep_poll_cursors: Duration = Field(
        default=timedelta(days=30),
        description="the cursor of a [[mes_poll]] endpoint no longer in the config is forgotten"
        " this long after its last read",
    )

    @property
    def archive_bytes(self) -> int:
        """The sent archive's cap in bytes."""
        if self.archive_max_size is not None:
            return int(self.archive_max_size)
        return int(self.max_size) // 10

    @property
    def dead_letter_bytes(self) -> int:
        """The most dead letters may hold, in bytes (never more than ``max_size``)."""
        if self.max_dead_letter_bytes is not None:
            return min(int(self.max_dead_letter_bytes), int(self.max_size))
        return int(self.max_size) // 10

    @field_validator("retention_schedule")
    @classmethod
    def _schedule_is_crontab(cls, schedule: str) -> str:
        # APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (its issue
        # 286): a number would silently run on the wrong day, so only names are accepted.
        return check_crontab(schedule)


class PolicyConfig(Section):
    """Sync what matters: snapshots for late joiners."""

    snapshot_interval: Duration = Field(
        default=timedelta(minutes=5), description="full machine snapshot; '0s' turns it off"
    )


class ReconnectConfig(Section):
    """Capped exponential backoff with full jitter, shared by every link."""

    initial_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = Field(
        default=timedelta(seconds=15),
        description="longest delay: a link back after an outage is found within it; full"
        " jitter spreads a fleet of agents over it",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must not be shorter than initial_delay")
        return self


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["plain", "json"] = "plain"


class AgentConfig(Section):
    """The whole agent.toml."""

    site: SiteConfig
    hub: HubConfig
    store: StoreConfig = Field(default=StoreConfig(), validate_default=True)
    opcua: list[OpcUaServerConfig] = Field(default_factory=list)
    mes: MesConfig | None = None
    jobcontrol: JobControlConfig | None = None
    mes_poll: list[PollEndpointConfig] = Field(
        default_factory=list, description="MES endpoints read on a schedule"
    )
    api: ApiConfig = ApiConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    policy: PolicyConfig = PolicyConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
    uplink: UplinkConfig = UplinkConfig()
    log: LogConfig = LogConfig()
    shutdown_timeout: Duration = Field(
        default=timedelta(seconds=10), description="bound on the final flush at stop"
    )

    @field_validator("opcua")
    @classmethod
    def _unique_names(cls, opcua: list[OpcUaServerConfig]) -> list[OpcUaServerConfig]:
        # A field validator, not a model one, so the error names the key `opcua`.
        servers = [server.name for server in opcua]
        machines = [m.id for server in opcua for m in server.machines]
        for what, names in (("opcua server names", servers), ("machine ids", machines)):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"{what} must be unique: {duplicates}")
        return opcua

    @field_validator("mes_poll")
    @classmethod
    def _unique_endpoints(cls, endpoints: list[PollEndpointConfig]) -> list[PollEndpointConfig]:
        names = [endpoint.name for endpoint in endpoints]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"mes_poll endpoint names must be unique: {duplicates}")
        return endpoints

    @field_validator("store")
    @classmethod
    def _seen_ids_outlive_the_session(cls, store: StoreConfig, info: ValidationInfo) -> StoreConfig:
        # A field validator on `store` (hub is validated before it), so the key is named; it
        # runs on the default section too (validate_default), as the default may be too short.
        hub = info.data.get("hub")
        if isinstance(hub, HubConfig) and store.keep_seen_ids < hub.session_expiry:
            raise ValueError(
                f"keep_seen_ids ({store.keep_seen_ids}) is shorter than hub.session_expiry"
                f" ({hub.session_expiry}): the broker may redeliver a message as long as it"
                " keeps the session, and an id forgotten sooner is applied twice;"
                " make store.keep_seen_ids at least hub.session_expiry"
            )
        return store

    @property
    def client_id(self) -> str:
        return self.hub.client_id or f"plantsync-{self.site.id}"

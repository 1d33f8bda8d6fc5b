"""The configuration model: one TOML file, validated strictly, frozen once loaded.

Every section forbids unknown keys (a misspelt key is an error that names it, not a silent
default). Durations are strings such as ``"500ms"``, ``"10s"``, ``"5m"``, ``"7d"``; sizes are
strings such as ``"512MB"`` or ``"2GiB"``. Validation performs no network I/O.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from plantsync.contracts.envelope import SITE_PATTERN

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _parse_duration(value: object) -> object:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration; write a number and a unit: "
                "'500ms', '10s', '5m', '1h', '7d'"
            )
        try:
            return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
        except OverflowError as exc:  # pydantic reports only ValueError as a validation error
            raise ValueError(f"{value!r} is too long a duration") from exc
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit; write it as '{value}s' or '{value}ms'")
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
"""A non-negative time span written with a unit: ``"250ms"``, ``"30s"``, ``"7d"``."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Tls(Section):
    """TLS for any client link; one model reused by MQTT (and later MES)."""

    ca_file: Path | None = Field(default=None, description="CA bundle that signs the server")
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="private key of cert_file")
    key_password: SecretStr | None = None
    server_name: str | None = Field(default=None, description="override the name checked")
    verify: Literal["full", "ca-only"] = Field(
        default="full", description="'ca-only' skips the host name check, never the chain"
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class SiteConfig(Section):
    """Who this agent is: one agent per plant."""

    id: str = Field(pattern=SITE_PATTERN, description="site id: a topic level on the hub")
    name: str = ""


class MqttProtocol(StrEnum):
    """The MQTT version offered to the hub; AUTO negotiates (drivers/mqtt/negotiation.py)."""

    AUTO = "auto"
    V5 = "5"
    V311 = "3.1.1"


class HubConfig(Section):
    """The MQTT hub at headquarters (or the site broker that bridges to it)."""

    url: str = Field(description="mqtt://host:port or mqtts://host:port")
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
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_plain(cls, prefix: str) -> str:
        if not prefix or any(char in prefix for char in "+#") or prefix.strip("/") != prefix:
            raise ValueError("must be non-empty, without '+', '#' or a leading/trailing '/'")
        return prefix

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None


class SecurityMode(StrEnum):
    """OPC UA MessageSecurityMode."""

    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class SecurityPolicy(StrEnum):
    """OPC UA security policies plantsync accepts (none of the deprecated SHA-1 ones)."""

    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256_Sha256_RsaPss"


class Deadband(Section):
    """OPC UA DataChangeFilter deadband, evaluated by the server."""

    kind: Literal["absolute", "percent"]
    value: float = Field(ge=0)


class TagConfig(Section):
    """One OPC UA node read as one named tag of a machine."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    node_id: str | None = Field(default=None, description="e.g. 'ns=2;s=Press1.Speed'")
    browse_path: str | None = Field(
        default=None, description="from Objects, e.g. '2:Press1/2:Speed'"
    )
    sampling_interval: Duration | None = Field(
        default=None, description="default: the server's publishing_interval"
    )
    queue_size: int = Field(default=10, ge=1, le=10000)
    deadband: Deadband | None = None

    @model_validator(mode="after")
    def _exactly_one_address(self) -> Self:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of node_id or browse_path")
        return self


class MachineConfig(Section):
    """A machine: a stream of machine.state messages made of its tags."""

    id: str = Field(pattern=SITE_PATTERN)
    tags: list[TagConfig] = Field(min_length=1)

    @field_validator("tags")
    @classmethod
    def _unique_tag_names(cls, tags: list[TagConfig]) -> list[TagConfig]:
        names = [tag.name for tag in tags]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tag names must be unique within a machine: {duplicates}")
        return tags


class OpcUaClientConfig(Section):
    """How plantsync connects to one OPC UA server: endpoint, security, identity.

    Shared by the servers machine state is read from and the Job Control server schedules go to.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    endpoint: str = Field(description="opc.tcp://host:port/path")
    security_mode: SecurityMode = SecurityMode.NONE
    security_policy: SecurityPolicy = SecurityPolicy.BASIC256SHA256
    certificate: Path | None = Field(default=None, description="client certificate (DER or PEM)")
    private_key: Path | None = None
    server_certificate: Path | None = Field(
        default=None, description="trusted server certificate; required when security is on"
    )
    username: str | None = None
    password: SecretStr | None = None
    request_timeout: Duration = timedelta(seconds=10)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_opc_tcp(cls, endpoint: str) -> str:
        if not endpoint.startswith("opc.tcp://"):
            raise ValueError(f"{endpoint!r} must start with opc.tcp://")
        return endpoint

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.security_mode is not SecurityMode.NONE and (
            self.certificate is None or self.private_key is None
        ):
            raise ValueError(
                f"security_mode {self.security_mode.value} needs certificate and private_key"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be given together")
        return self


class OpcUaServerConfig(OpcUaClientConfig):
    """One OPC UA server and the machines read from it."""

    publishing_interval: Duration = timedelta(milliseconds=100)
    keepalive_count: int = Field(default=10, ge=1)
    lifetime_count: int = Field(
        default=300, ge=3, description="at least 3 x keepalive_count (OPC UA Part 4)"
    )
    monitored_item_batch: int = Field(
        default=500, ge=1, description="monitored items created per CreateMonitoredItems call"
    )
    stall_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="no notification or keep-alive for this long: re-create the session",
    )
    machines: list[MachineConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _lifetime_covers_keepalives(self) -> Self:
        if self.lifetime_count < 3 * self.keepalive_count:
            raise ValueError("lifetime_count must be at least 3 x keepalive_count")
        return self


class MesConfig(Section):
    """The plant's MES REST endpoint that schedule changes are delivered to."""

    url: str = Field(description="base URL, e.g. https://mes.plant.local/api/plantsync")
    token: SecretStr | None = Field(default=None, description="sent as 'Authorization: Bearer'")
    tls: Tls | None = None
    request_timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.password is not None:
            raise ValueError("put credentials in token, not in the url")
        return url


class ApiConfig(Section):
    """The agent's local HTTP API and status page."""

    host: str = Field(
        default="127.0.0.1", description="bind address; anything but loopback needs a token"
    )
    port: int = Field(default=8470, ge=0, le=65535, description="0 picks a free port")
    token: SecretStr | None = Field(
        default=None, description="bearer token for state-changing calls (and any non-loopback)"
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


class JobControlConfig(OpcUaClientConfig):
    """An OPC UA server implementing ISA-95 Job Control (OPC 10031-4): orders go to its
    JobOrderReceiver, its job responses come back as order status and confirmations."""

    name: str = Field(default="jobcontrol", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    job_order_receiver: str = Field(
        default="ns=2;s=JobOrderReceiver",
        description="node id of the ISA95JobOrderReceiverObjectType instance",
    )
    job_response_provider: str = Field(
        default="ns=2;s=JobResponseProvider",
        description="node id of the ISA95JobResponseProviderObjectType instance",
    )
    publishing_interval: Duration = Field(
        default=timedelta(milliseconds=500),
        description="how often the server reports job order states and results",
    )
    stall_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="no notification or keep-alive for this long: re-create the session",
    )


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

    @property
    def archive_bytes(self) -> int:
        """The sent archive's cap in bytes."""
        if self.archive_max_size is not None:
            return int(self.archive_max_size)
        return int(self.max_size) // 10


class PolicyConfig(Section):
    """Sync what matters: snapshots for late joiners."""

    snapshot_interval: Duration = Field(
        default=timedelta(minutes=5), description="full machine snapshot; '0s' turns it off"
    )


class ReconnectConfig(Section):
    """Capped exponential backoff with full jitter, shared by every link."""

    initial_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(seconds=60)

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
    store: StoreConfig = StoreConfig()
    opcua: list[OpcUaServerConfig] = Field(default_factory=list)
    mes: MesConfig | None = None
    jobcontrol: JobControlConfig | None = None
    api: ApiConfig = ApiConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    policy: PolicyConfig = PolicyConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
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

    @property
    def client_id(self) -> str:
        return self.hub.client_id or f"plantsync-{self.site.id}"

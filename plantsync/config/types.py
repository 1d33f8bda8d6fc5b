"""The building blocks of every config section: strict sections, durations with units, TLS.

Every section forbids unknown keys (a misspelt key is an error that names it, not a silent
default) and is frozen once loaded. Durations are strings such as ``"500ms"``, ``"10s"``,
``"5m"``, ``"7d"``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

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

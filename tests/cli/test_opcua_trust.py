"""``plantsync opcua list|trust|reject``: the server certificate the agent trusts, managed from
the command line against a real secured server (instead of copying files by hand)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from plantsync.tools.cli import main
from tests.fixtures.opcua import free_port
from tests.opcua.test_security import Identity, identities, secure_plant

__all__ = ["identities"]  # the module-scoped fixture, shared with the security tests


def config_file(tmp_path: Path, endpoint: str, client: Identity) -> tuple[Path, Path]:
    """A config with one secured OPC UA server whose trusted certificate is not there yet."""
    trusted = tmp_path / "pki" / "line-1.der"
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[site]
id = "trust-site"
[hub]
url = "mqtt://127.0.0.1:{free_port()}"
[store]
path = "{tmp_path / "store.db"}"
[[opcua]]
name = "line-1"
endpoint = "{endpoint}"
security_mode = "SignAndEncrypt"
certificate = "{client.certificate}"
private_key = "{client.private_key}"
server_certificate = "{trusted}"
request_timeout = "5s"
[[opcua.machines]]
id = "press-1"
[[opcua.machines.tags]]
name = "speed"
node_id = "ns=2;s=press-1.speed"
"""
    )
    return path, trusted


async def opcua(config: Path, *argv: str) -> int:
    """The command in a thread: it runs its own event loop, the server runs on this one."""
    return await asyncio.to_thread(main, ["opcua", *argv, "--config", str(config)])


async def test_a_presented_certificate_is_trusted_by_thumbprint_listed_and_rejected(
    identities: tuple[Identity, Identity], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, client = identities
    thumbprint = hashlib.sha1(server.certificate.read_bytes()).hexdigest()  # noqa: S324
    async with secure_plant(server, client.certificate) as plant:
        config, trusted = config_file(tmp_path, plant.endpoint, client)
        assert await opcua(config, "list") == 0
        before = capsys.readouterr().out
        assert await opcua(config, "trust", "line-1") == 2  # no thumbprint: nothing written
        refused = capsys.readouterr().err
        assert not trusted.exists()
        assert await opcua(config, "trust", "line-1", "--thumbprint", thumbprint.upper()) == 0
        assert await opcua(config, "list") == 0
        after = capsys.readouterr().out

    assert f"sha1 {thumbprint}" in before
    assert "not trusted" in before
    assert thumbprint in refused
    assert trusted.read_bytes() == server.certificate.read_bytes()
    assert "TRUSTED" in after

    assert await opcua(config, "reject", "line-1") == 0
    assert not trusted.exists()
    assert trusted.with_name("line-1.der.rejected").read_bytes() == server.certificate.read_bytes()


async def test_trust_of_an_unreachable_server_is_one_line_and_exit_1(
    identities: tuple[Identity, Identity], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, client = identities
    config, trusted = config_file(tmp_path, f"opc.tcp://127.0.0.1:{free_port()}", client)
    assert await opcua(config, "trust", "line-1", "--thumbprint", "00") == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not trusted.exists()

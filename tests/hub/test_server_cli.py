"""Serving (loopback-only plain HTTP, TLS 1.2+ otherwise) and the `careops hub` commands."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time

import httpx
import pytest
import uvicorn

from app.errors import KnownError
from sync.hub.cli import register
from sync.hub.server import ServeError, build_config, check_transport, is_loopback
from tests.hub import login


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="careops")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
def tls_files(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "hub.crt", tmp_path / "hub.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))  # fmt: skip
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_plain_http_on_loopback_is_fine(host):
    assert is_loopback(host)
    assert check_transport(host, None, None) is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "hub.example.org"])
def test_plain_http_beyond_loopback_is_refused(host):
    with pytest.raises(ServeError) as err:
        check_transport(host, None, None)
    assert "without TLS" in str(err.value) and "--tls-cert" in err.value.user_text()


def test_half_or_missing_tls_settings_are_refused(tmp_path, tls_files):
    with pytest.raises(ServeError, match="both"):
        check_transport("0.0.0.0", tls_files[0], None)
    with pytest.raises(ServeError, match="does not exist"):
        check_transport("0.0.0.0", str(tmp_path / "nope.crt"), tls_files[1])
    assert check_transport("0.0.0.0", *tls_files) is True


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_floor_is_1_2_and_a_real_tls_request_works(tmp_path, tls_files):
    config = build_config(f"sqlite:///{tmp_path / 'hub.db'}", "127.0.0.1", _free_port(), *tls_files)
    assert config.ssl is not None
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hub-tls-test")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx = ssl.create_default_context(cafile=tls_files[0])
        r = httpx.get(f"https://127.0.0.1:{config.port}/v1/health", verify=ctx, timeout=5)
        assert r.status_code == 200 and r.json()["db"] == "sqlite"
        # a client that offers only TLS 1.1 or lower gets no connection
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(tls_files[0])
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{config.port}/v1/health", verify=old, timeout=5)
    finally:
        server.should_exit = True
        thread.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_serve_command_refuses_plain_http_beyond_loopback(tmp_path):
    args = parser().parse_args(["hub", "serve", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--host", "0.0.0.0"])
    with pytest.raises(KnownError, match="without TLS"):
        args.func(args)


def test_hub_add_user_command(tmp_path, monkeypatch, capsys, make_client):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("CAREOPS_NEW_USER_PASSWORD", "pw-nurse1")
    args = parser().parse_args(["hub", "add-user", "nurse1", "--role", "charge_nurse", "--name", "Nurse One", "--db", url])
    assert args.func(args) == 0
    assert "hub user nurse1 added as charge_nurse" in capsys.readouterr().out
    client = make_client(url)
    r = client.post("/v1/login", json={"username": "nurse1", "password": "pw-nurse1", "workstation": "ws-1"})
    assert r.json()["user"] == {"username": "nurse1", "display_name": "Nurse One", "role": "charge_nurse"}
    # again with a new role: updated, not duplicated
    args = parser().parse_args(["hub", "add-user", "nurse1", "--role", "followup_nurse", "--db", url])
    assert args.func(args) == 0
    assert "updated" in capsys.readouterr().out
    assert login(client, "nurse1")  # same password


def test_hub_add_user_without_password_or_database(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CAREOPS_NEW_USER_PASSWORD", raising=False)
    monkeypatch.delenv("CAREOPS_HUB_DB", raising=False)
    monkeypatch.setattr("sys.stdin", None)
    args = parser().parse_args(["hub", "add-user", "x", "--role", "analyst", "--db", f"sqlite:///{tmp_path / 'h.db'}"])
    assert args.func(args) == 2
    assert "CAREOPS_NEW_USER_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("CAREOPS_NEW_USER_PASSWORD", "pw-x")
    args = parser().parse_args(["hub", "add-user", "x", "--role", "analyst"])
    with pytest.raises(KnownError, match="CAREOPS_HUB_DB"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser().parse_args(["hub", "add-user", "x", "--role", "wizard"])


@pytest.mark.parametrize("url", ["mysql://x@y/z", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_unsupported_database_urls_get_a_clear_message(url):
    from sync.hub.db import HubDatabaseError, create_engine

    with pytest.raises(HubDatabaseError):
        create_engine(url)


@pytest.mark.allow_log_warnings
def test_unreachable_postgres_is_a_known_error():
    from sync.hub.db import HubDatabaseError, open_database

    with pytest.raises(HubDatabaseError, match="cannot be opened"):
        open_database(f"postgresql://nobody@127.0.0.1:{_free_port()}/none")

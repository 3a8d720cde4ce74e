"""Transport security: the whole stack with mutual TLS on every gRPC hop.

A throwaway CA (made here with ``cryptography``) issues one certificate that every process
serves and dials with, as one Kubernetes Secret would give them; a second, rogue CA issues
a client certificate of its own. One real stack runs with ``VOXMESH_TLS_*`` and client auth
on: a typed turn goes browser -> gateway -> orchestrator -> LLM/TTS and back, and direct
clients without a certificate, with the rogue one, in plaintext, or expecting another
server name are refused, while one holding the CA's certificate passes health checks and
reflection.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from tests.fake_openai import FakeOpenAI
from tests.test_deploy import DOCKERFILE, env_of, healthcheck_argv, parse_dockerfile
from voxmesh import tls
from voxmesh.client import RealtimeClient
from voxmesh.config import TlsSettings
from voxmesh.launcher import LaunchError, Ports, Stack

pytestmark = pytest.mark.e2e

ANSWER = "Our service department opens at eight in the morning on Saturday."
SERVING = health_pb2.HealthCheckResponse.SERVING
TLS_VARS = ("CERT_FILE", "KEY_FILE", "CA_FILE", "CLIENT_AUTH", "SERVER_NAME_OVERRIDE")


# -- a throwaway PKI ----------------------------------------------------------------------------


@dataclass
class Issued:
    """A key and its certificate, as PEM files."""

    key: Path
    cert: Path


@dataclass
class Pki:
    """The mesh's CA and certificate, and a rogue CA's client certificate."""

    ca: Path
    mesh: Issued
    rogue_ca: Path
    rogue: Issued


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)))


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(name), _name(name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(directory: Path, name: str,
          ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> Issued:
    """A server-and-client certificate for localhost and 127.0.0.1, signed by ``ca``."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(name), ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    issued = Issued(directory / f"{name}.key", directory / f"{name}.crt")
    issued.key.write_bytes(_pem_key(key))
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return issued


def write_ca(path: Path, cert: x509.Certificate) -> Path:
    """``cert`` as a PEM CA bundle at ``path``."""
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = make_ca("VoxMesh test CA"), make_ca("Rogue CA")
    return Pki(ca=write_ca(directory / "ca.crt", ca[1]), mesh=issue(directory, "mesh", ca),
               rogue_ca=write_ca(directory / "rogue-ca.crt", rogue_ca[1]),
               rogue=issue(directory, "rogue", rogue_ca))


def tls_env(pki: Pki) -> dict[str, str]:
    """What a deployment sets on every process (docs/deploy.md, Transport security)."""
    return {"VOXMESH_TLS_CERT_FILE": str(pki.mesh.cert),
            "VOXMESH_TLS_KEY_FILE": str(pki.mesh.key),
            "VOXMESH_TLS_CA_FILE": str(pki.ca),
            "VOXMESH_TLS_CLIENT_AUTH": "true"}


@pytest.fixture(autouse=True)
def _no_tls_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings built here see only what each test passes."""
    for var in TLS_VARS:
        monkeypatch.delenv(f"VOXMESH_TLS_{var}", raising=False)


# -- settings, no processes ---------------------------------------------------------------------


@pytest.mark.parametrize(("env", "named"), [
    ({"VOXMESH_TLS_CERT_FILE": "{cert}"}, "VOXMESH_TLS_KEY_FILE"),
    ({"VOXMESH_TLS_CERT_FILE": "{cert}", "VOXMESH_TLS_KEY_FILE": "{key}"},
     "VOXMESH_TLS_CA_FILE"),
    ({"VOXMESH_TLS_KEY_FILE": "{key}", "VOXMESH_TLS_CA_FILE": "{ca}"},
     "VOXMESH_TLS_CERT_FILE"),
    ({"VOXMESH_TLS_CERT_FILE": "{cert}", "VOXMESH_TLS_KEY_FILE": "/nonexistent/tls.key",
      "VOXMESH_TLS_CA_FILE": "{ca}"}, "VOXMESH_TLS_KEY_FILE: cannot read /nonexistent"),
    ({"VOXMESH_TLS_CERT_FILE": "{cert}", "VOXMESH_TLS_KEY_FILE": "{key}",
      "VOXMESH_TLS_CA_FILE": "{not_pem}"}, "VOXMESH_TLS_CA_FILE"),
    ({"VOXMESH_TLS_CLIENT_AUTH": "true"}, "VOXMESH_TLS_CLIENT_AUTH"),
])
def test_incomplete_or_unreadable_settings_name_the_variable(
        pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str], named: str) -> None:
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82 not a PEM file")
    paths = {"cert": pki.mesh.cert, "key": pki.mesh.key, "ca": pki.ca, "not_pem": not_pem}
    env = {k: v.format(**paths) for k, v in env.items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=named):
        TlsSettings()
    # The launcher refuses before it starts any process.
    stack = Stack(ports=Ports.random(), state_dir=tmp_path, services=("stt",), extra_env=env)
    with pytest.raises(LaunchError, match=named):
        stack.start()
    assert not stack.procs


def test_no_settings_is_plaintext(pki: Pki) -> None:
    assert not TlsSettings().enabled
    assert tls.server_credentials(TlsSettings()) is None
    assert tls.channel_credentials(TlsSettings()) is None
    configured = TlsSettings.from_env(tls_env(pki))
    assert configured.enabled and configured.client_auth
    assert tls.server_credentials(configured) is not None


# -- the stack with mTLS on every hop -----------------------------------------------------------


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=ANSWER, first_token_delay_s=0.05, token_delay_s=0.01) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(stack_factory: Any, fake_llm: FakeOpenAI, pki: Pki) -> Stack:
    # The launcher's own health checks are mTLS too: start() returning proves they passed.
    return stack_factory(llm_base_url=fake_llm.base_url, extra_env={
        **tls_env(pki), "VOXMESH_TTS_ENGINES": "hibari",
        "VOXMESH_TTS_PRIMARY_TIMEOUT_MS": "60000"})


def client_tls(pki: Pki, issued: Issued | None = None,
               ca: Path | None = None) -> grpc.ChannelCredentials:
    """Channel credentials trusting ``ca`` (the mesh's CA), presenting ``issued`` if any."""
    return grpc.ssl_channel_credentials(
        root_certificates=(ca or pki.ca).read_bytes(),
        private_key=issued.key.read_bytes() if issued else None,
        certificate_chain=issued.cert.read_bytes() if issued else None)


async def health(channel: grpc.aio.Channel) -> health_pb2.HealthCheckResponse:
    return await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)


async def assert_refused(channel: grpc.aio.Channel) -> None:
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


async def test_typed_turn_through_the_gateway_with_mtls_on_every_hop(stack: Stack) -> None:
    """Gateway -> orchestrator -> LLM and TTS all dial servers that demand a client
    certificate: a completed turn with text and audio means every hop did mTLS."""
    url = f"ws://{stack.host}:{stack.ports.gateway}/v1/realtime"
    async with RealtimeClient(url, api_key=stack.api_key) as client:
        started = await client.start()
        assert started["type"] == "session.started", started
        await client.send("input_text", text="When does service open on Saturday?")
        done = await client.wait_for(lambda e: e["type"] == "response.done", 60)
    assert done["status"] == "completed", done
    text = "".join(e["delta"] for e in client.received.of_type("response.text")
                   if e["turn_id"] == done["turn_id"])
    assert text == ANSWER
    assert len(client.received.audio_bytes()) > 24000 * 2 // 2, "under half a second of audio"


@pytest.mark.parametrize("service", ["orchestrator", "stt", "tts", "llm"])
async def test_a_client_with_the_mesh_certificate_passes_health_and_reflection(
        stack: Stack, pki: Pki, service: str) -> None:
    settings = TlsSettings.from_env(tls_env(pki))
    async with tls.open_aio_channel(stack.addr(service), settings) as channel:
        assert (await health(channel)).status == SERVING
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=10)
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert "grpc.health.v1.Health" in names and any(n.startswith("voxmesh.v1.") for n in names)


@pytest.mark.parametrize("service", ["orchestrator", "stt"])
async def test_a_client_without_a_certificate_is_refused(
        stack: Stack, pki: Pki, service: str) -> None:
    await assert_refused(grpc.aio.secure_channel(stack.addr(service), client_tls(pki)))


@pytest.mark.parametrize("service", ["orchestrator", "stt"])
async def test_a_certificate_from_another_ca_is_refused(
        stack: Stack, pki: Pki, service: str) -> None:
    # The rogue client trusts the mesh's CA, so only the server's check of it can fail.
    await assert_refused(grpc.aio.secure_channel(stack.addr(service),
                                                 client_tls(pki, pki.rogue)))


@pytest.mark.parametrize("service", ["orchestrator", "stt"])
async def test_plaintext_is_refused(stack: Stack, service: str) -> None:
    await assert_refused(grpc.aio.insecure_channel(stack.addr(service)))


async def test_a_server_is_verified_against_the_ca_and_the_name(stack: Stack, pki: Pki) -> None:
    """Clients check servers too: a certificate the client's CA did not sign, or one for
    another name, ends the handshake."""
    await assert_refused(grpc.aio.secure_channel(
        stack.addr("orchestrator"), client_tls(pki, pki.mesh, ca=pki.rogue_ca)))
    wrong_name = TlsSettings.from_env({**tls_env(pki),
                                       "VOXMESH_TLS_SERVER_NAME_OVERRIDE": "orchestrator.example"})
    await assert_refused(tls.open_aio_channel(stack.addr("orchestrator"), wrong_name))
    right_name = TlsSettings.from_env({**tls_env(pki),
                                       "VOXMESH_TLS_SERVER_NAME_OVERRIDE": "localhost"})
    async with tls.open_aio_channel(stack.addr("orchestrator"), right_name) as channel:
        assert (await health(channel)).status == SERVING


@pytest.mark.parametrize("service", ["orchestrator", "tts"])
def test_the_image_healthcheck_and_k8s_probes_pass_over_mtls(
        stack: Stack, pki: Pki, service: str) -> None:
    """The images' HEALTHCHECK, also the exec probes of deploy/k8s/components/mtls, run as
    written: it passes with the mesh's settings and fails in plaintext."""
    stages = parse_dockerfile(DOCKERFILE.read_text())
    argv = [sys.executable, *healthcheck_argv(stages, service)[1:]]
    env = {**os.environ, "HEALTHCHECK_SETTINGS": env_of(stages, service)["HEALTHCHECK_SETTINGS"],
           f"VOXMESH_{service.upper()}_PORT": str(getattr(stack.ports, service))}
    done = subprocess.run(argv, env={**env, **tls_env(pki)}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, "the healthcheck passed in plaintext"

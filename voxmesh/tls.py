"""Transport security of the gRPC hops: server credentials and channels from :class:`TlsSettings`.

With ``VOXMESH_TLS_*`` unset every port and channel is plaintext, as on a laptop. With
them set, servers listen with TLS (and require a client certificate signed by the CA
when ``client_auth`` is on), and every channel verifies the server against the CA and
presents this process's certificate, so one setting turns on mTLS for the whole mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from voxmesh.config import TlsSettings

ChannelOptions = Sequence[tuple[str, Any]]


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """Credentials for ``add_secure_port``, or None when TLS is off (plaintext port)."""
    if not tls.enabled:
        return None
    return grpc.ssl_server_credentials(
        [(Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes())],
        root_certificates=Path(tls.ca_file).read_bytes(),
        require_client_auth=tls.client_auth,
    )


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials | None:
    """Credentials that verify the server with the CA and present this process's certificate
    (servers without ``client_auth`` ignore it); None when TLS is off."""
    if not tls.enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(tls.ca_file).read_bytes(),
        private_key=Path(tls.key_file).read_bytes(),
        certificate_chain=Path(tls.cert_file).read_bytes(),
    )


def _options(tls: TlsSettings, options: ChannelOptions) -> list[tuple[str, Any]]:
    opts = list(options)
    if tls.enabled and tls.server_name_override:
        opts.append(("grpc.ssl_target_name_override", tls.server_name_override))
    return opts


def open_channel(address: str, tls: TlsSettings | None = None,
                 options: ChannelOptions = ()) -> grpc.Channel:
    """A blocking channel to ``address``, TLS or plaintext as ``tls`` says.

    Args:
        address: ``host:port`` or a gRPC target such as ``dns:///stt-headless:50051``.
        tls: Transport settings; read from ``VOXMESH_TLS_*`` when omitted.
        options: Channel options (message caps, keepalive, ...), passed through.
    """
    tls = tls if tls is not None else TlsSettings()
    credentials = channel_credentials(tls)
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=_options(tls, options))


def open_aio_channel(address: str, tls: TlsSettings | None = None,
                     options: ChannelOptions = ()) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``address``; arguments as :func:`open_channel`."""
    tls = tls if tls is not None else TlsSettings()
    credentials = channel_credentials(tls)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=_options(tls, options))

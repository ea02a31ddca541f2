"""A throw-away certificate authority and broker certificate for the local SASL_SSL cluster.

Made with `trustme` (a maintained library for exactly this) the first time a data directory is
used, and kept there, so a restarted cluster presents the same certificate and clients keep
trusting `ca.pem`. Kafka reads the broker's key and chain from one PEM file (PKCS#8 key, no
password), which is what `broker.pem` holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "ensure_tls_files"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a cluster's TLS material is."""

    ca_cert: Path  # what clients trust (KAFKA_SSL_CA_FILE)
    broker_pem: Path  # the brokers' private key + certificate chain (ssl.keystore.location)


def ensure_tls_files(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> TlsFiles:
    """The CA and broker certificate in `directory`, created once (0600 for the key)."""
    files = TlsFiles(directory / "ca.pem", directory / "broker.pem")
    if files.ca_cert.is_file() and files.broker_pem.is_file():
        return files
    import trustme
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="ardary-pipeline local test CA")
    leaf = ca.issue_cert(*hosts)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    partial = files.broker_pem.with_suffix(".partial")
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(pkcs8 + chain)
    ca.cert_pem.write_to_path(str(files.ca_cert))
    partial.replace(files.broker_pem)  # last: its presence means the pair is complete
    return files

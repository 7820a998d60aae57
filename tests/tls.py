"""Certificates from a throw-away CA (trustme) for the TLS tests and the bench."""

from __future__ import annotations

import base64
import hashlib
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Certs:
    """A throw-away CA and a certificate for localhost and 127.0.0.1, in files."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert = folder / "cert.pem"
        self.key = folder / "key.pem"
        self.ca_file = folder / "ca.pem"
        self.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def client_context(self) -> ssl.SSLContext:
        """A client's context that trusts the CA and checks the host name."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def spki_hash(self) -> str:
        """The base64 SHA-256 of the certificate's public key, as Chromium's
        ``--ignore-certificate-errors-spki-list`` takes it (it trusts exactly this key)."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

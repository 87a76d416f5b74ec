"""Certificates and keys for a Flower federation across machines: TLS for the SuperLink, a key pair per SuperNode.

`python tools/credentials.py --address IP --clients K` (its command line) writes into
certificados/: ca.crt, the authority every machine trusts; server.pem and
server.key, the SuperLink's certificate for every address given plus 127.0.0.1 and localhost (the SuperLink
starts its own helpers against 127.0.0.1 with the same certificate, so without them the run hangs); and into
claves/: cliente_<N> and cliente_<N>.pub, each SuperNode's P-384 key pair in OpenSSH format, what
flower-supernode and `flwr supernode register` read. Private keys are written readable by their owner only;
the authority's own key is not kept (generate a new set to add machines). Both folders are git-ignored.
"""

import datetime
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedmnist.defaults import MAX_CLIENTS
from fedmnist.errors import FedMnistError

ALWAYS = ("127.0.0.1", "localhost")  # the SuperLink's own helpers connect there
DAYS = 365  # a course's year
HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


class CredentialsError(FedMnistError, ValueError):
    """An address or a setting that cannot make credentials; the message says which."""


def subject_names(addresses):
    """The subjectAltName entries: an IP address as such, anything else as a DNS name; ALWAYS included."""
    names = []
    for address in dict.fromkeys([*addresses, *ALWAYS]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            if len(address) > 253 or not all(HOST_LABEL.fullmatch(part) for part in address.split(".")):
                raise CredentialsError(f"--address {address[:60]!r}: neither an IP address nor a host name") from None
            names.append(x509.DNSName(address))
    return names


def certificate(subject, issuer, public_key, signing_key, is_ca, names=(), days=DAYS):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA384())


def write_private(path, data):
    """A private key, readable and writable by its owner only, from its creation on."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


class Credentials:
    """TLS and SuperNode-authentication material, generated into `certificates` and `keys`.

    `ca`, `cert` and `key` are the authority's certificate and the SuperLink's certificate and key;
    `node_keys[i]` is (private, public) of the SuperNode with partition-id i (client i + 1).
    """

    def __init__(self, certificates, keys, clients, addresses=(), days=DAYS):
        if not 1 <= clients <= MAX_CLIENTS:
            raise CredentialsError(f"--clients {clients}: must be in 1..{MAX_CLIENTS:,}")
        names = subject_names(addresses)
        certificates, keys = Path(certificates), Path(keys)
        certificates.mkdir(parents=True, exist_ok=True)
        keys.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = certificates / "ca.crt", certificates / "server.pem", certificates / "server.key"
        ca_key = ec.generate_private_key(ec.SECP384R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedmnist course CA")])
        ca_cert = certificate(ca_name, ca_name, ca_key.public_key(), ca_key, True, days=days)
        server_key = ec.generate_private_key(ec.SECP384R1())
        server_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, str(addresses[0] if addresses else ALWAYS[0]))]
        )
        server_cert = certificate(server_name, ca_name, server_key.public_key(), ca_key, False, names, days)
        self.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
        write_private(
            self.key,
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        self.node_keys = [self.node_key_pair(keys, client) for client in range(1, clients + 1)]

    @staticmethod
    def node_key_pair(keys, client):
        private, public = keys / f"cliente_{client}", keys / f"cliente_{client}.pub"
        node_key = ec.generate_private_key(ec.SECP384R1())
        write_private(
            private,
            node_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
        )
        public.write_bytes(
            node_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        return private, public

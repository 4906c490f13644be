"""Throwaway TLS material for a test broker, made with the JDK's keytool (always there with Kafka).

A private CA signs the broker's key; the broker gets a PKCS12 keystore, clients get the CA as a PEM
file (librdkafka's ``ssl.ca.location``). The broker certificate names ``127.0.0.1`` and ``localhost``,
because librdkafka verifies the host name by default.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# keytool is a short-lived JVM: skip the optimising compiler and the parallel collector.
_FAST_JVM = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")


@dataclass(frozen=True)
class Certificates:
    """Where the files are, and the one password of the broker's keystore and key."""

    ca_pem: Path
    keystore: Path
    password: str

    def broker_properties(self, listener: str) -> dict[str, str]:
        """The ``ssl.*`` settings of one broker listener (Kafka lowercases the listener name)."""
        prefix = f"listener.name.{listener.lower()}."
        return {
            f"{prefix}ssl.keystore.type": "PKCS12",
            f"{prefix}ssl.keystore.location": str(self.keystore),
            f"{prefix}ssl.keystore.password": self.password,
            f"{prefix}ssl.key.password": self.password,
        }


def make_certificates(directory: Path, days: int = 2) -> Certificates:
    """A CA and a broker keystore signed by it, in ``directory``; about 5 s of JVM starts."""
    keytool = shutil.which("keytool")
    if keytool is None:
        raise RuntimeError("keytool (from a JDK) is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    ca_store, broker_store = directory / "ca.p12", directory / "broker.p12"
    ca_pem, request, signed = directory / "ca.pem", directory / "broker.csr", directory / "broker.pem"
    key = ("-keyalg", "EC", "-groupname", "secp256r1", "-validity", str(days))

    def run(*args: str, store: Path) -> None:
        command = [keytool, *_FAST_JVM, *args, "-keystore", str(store), "-storetype", "PKCS12"]
        command += ["-storepass", password, "-noprompt"]
        subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)

    run("-genkeypair", "-alias", "ca", "-dname", "CN=fraud-test-ca", "-ext", "bc:c", *key, store=ca_store)
    run("-exportcert", "-alias", "ca", "-rfc", "-file", str(ca_pem), store=ca_store)
    run("-genkeypair", "-alias", "broker", "-dname", "CN=localhost", *key, store=broker_store)
    run("-certreq", "-alias", "broker", "-file", str(request), store=broker_store)
    run(
        *("-gencert", "-alias", "ca", "-infile", str(request), "-outfile", str(signed), "-rfc"),
        *("-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", str(days)),
        store=ca_store,
    )
    # The chain must be complete in the keystore before the signed certificate replaces the self-signed one.
    run("-importcert", "-alias", "ca", "-file", str(ca_pem), store=broker_store)
    run("-importcert", "-alias", "broker", "-file", str(signed), store=broker_store)
    return Certificates(ca_pem=ca_pem, keystore=broker_store, password=password)

"""A local certificate authority for mutual TLS between dfs processes.

`scripts/make_ca` and `dfs up --tls` use it to make a CA and certificates
signed by it, with the openssl command line tool (present on every Debian and
Ubuntu machine; the Makefile installs it). Keys are EC P-256, written 0600.
The CA key stays in the directory that made it: whoever holds it can admit a
new process to the cluster, so operators keep it off the servers.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity clients commonly accept for a leaf


class CaError(Exception):
    """openssl is missing or refused; the message says which and why."""


@dataclass(frozen=True)
class IssuedPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise CaError("openssl not found; install it (apt-get install openssl)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CaError(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    os.chmod(path, 0o600)


def make_ca(directory: Path, name: str = "dfs cluster CA") -> IssuedPair:
    """Create DIR/ca.pem and DIR/ca.key; refuses to replace an existing CA."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = IssuedPair(directory / CA_CERT, directory / CA_KEY)
    if pair.cert.exists() or pair.key.exists():
        raise CaError(f"{directory} already holds a CA; refusing to replace it")
    _new_key(pair.key)
    _openssl("req", "-x509", "-new", "-key", str(pair.key), "-out", str(pair.cert),
             "-days", str(CA_DAYS), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return pair


def _subject_alt_names(hosts: list[str]) -> str:
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def issue(directory: Path, name: str, hosts: list[str]) -> IssuedPair:
    """Sign DIR/NAME.pem + DIR/NAME.key with the CA in DIR, valid for `hosts`.

    Each certificate serves both as server and client identity, so one pair per
    host is enough for every dfs process on it.
    """
    if not hosts:
        raise CaError("a certificate needs at least one host name or address")
    ca = IssuedPair(directory / CA_CERT, directory / CA_KEY)
    if not ca.cert.exists() or not ca.key.exists():
        raise CaError(f"no CA in {directory}; make one first")
    pair = IssuedPair(directory / f"{name}.pem", directory / f"{name}.key")
    _new_key(pair.key)
    with tempfile.TemporaryDirectory() as scratch:
        request = Path(scratch) / "request.csr"
        extensions = Path(scratch) / "extensions.cnf"
        extensions.write_text(
            f"subjectAltName={_subject_alt_names(hosts)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl("req", "-new", "-key", str(pair.key), "-out", str(request),
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca.cert),
                 "-CAkey", str(ca.key), "-CAcreateserial", "-out", str(pair.cert),
                 "-days", str(LEAF_DAYS), "-extfile", str(extensions))
    serial = directory / "ca.srl"
    if serial.exists():
        os.chmod(serial, 0o600)
    return pair

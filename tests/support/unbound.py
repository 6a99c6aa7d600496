"""A validating resolver on loopback: Debian's unbound serving one DNSSEC-signed zone.

``validating_resolver(tmp, origin, records)`` signs a zone made of
``records`` (zone-file lines relative to ``origin``) with a fresh ECDSA P-256
key (dnspython's ``dns.dnssec.sign_zone``, NSEC), gives unbound that key as
the zone's trust anchor and the zone as an ``auth-zone`` it treats as
upstream data, so every answer goes through unbound's validator: the AD bit
means validated, a bad signature means SERVFAIL.  Yields ``(address, port)``;
unbound runs in the foreground as our child and is stopped by its PID.
``scripts/test`` installs Debian's unbound package (without letting it
start its system-wide resolver); a test that finds no unbound fails.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.dnssec
import dns.name
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

UNBOUND = shutil.which("unbound") or (
    "/usr/sbin/unbound" if Path("/usr/sbin/unbound").exists() else None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def validating_resolver(tmp: Path, origin: str, records: list[str]) -> Iterator[tuple[str, int]]:
    """unbound validating ``origin``'s signed zone on 127.0.0.1 (see the module)."""
    assert UNBOUND is not None
    name = dns.name.from_text(origin + ".")
    text = "\n".join([
        "$TTL 300",
        f"@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300",
        f"@ NS ns.{origin}.",
        "ns A 127.0.0.1",
        *records,
    ]) + "\n"
    zone = dns.zone.from_text(text, name, relativize=False)
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256,
                                    flags=257)
    with zone.writer() as txn:
        dns.dnssec.sign_zone(zone, txn=txn, keys=[(key, dnskey)], add_dnskey=True,
                             dnskey_ttl=300, lifetime=86400)
    directory = tmp / "unbound"
    directory.mkdir()
    zone_file = directory / f"{origin}.zone"
    zone.to_file(str(zone_file), relativize=False)
    port = _free_port()
    conf = directory / "unbound.conf"
    conf.write_text(f"""server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  do-ip6: no
  module-config: "validator iterator"
  trust-anchor: "{origin}. 300 IN DNSKEY {dnskey.to_text()}"
  local-zone: "{origin.rsplit('.', 1)[-1]}." nodefault
  domain-insecure: "."
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
auth-zone:
  name: "{origin}"
  zonefile: "{zone_file}"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
""")
    proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # ready once it says so (no polling, no sleeps)
            if "start of service" in line:
                break
        else:
            raise RuntimeError(f"unbound did not start (exit {proc.wait()})")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

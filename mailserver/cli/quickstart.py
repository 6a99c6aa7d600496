"""``mailserver quickstart you@example.org [--hostname H] [-c DIR] [--data-dir DIR]``:
from nothing to a configured server in one command (as mox's quickstart).

Writes a production configuration (listeners 25/587/465/143/993 on every
address, the http listener on loopback, checks on, DKIM with RSA and
Ed25519), makes the store, the domain, the account (its password printed
once), ``postmaster@`` as an alias of it (RFC 5321 §4.5.1; the DMARC and
TLS-RPT reports go there), two DKIM keys with dated selectors, and a
self-signed certificate unless ``--cert``/``--key`` name one; then prints
every DNS record to publish with why, and the systemd steps.

It never overwrites: an existing configuration file or store is an error
(exit 1) and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from pathlib import Path

from mailserver.cli.common import PROG, CliError

_SYSTEM_CONFIG_DIR = Path("/etc/mailserver")
_SYSTEM_DATA_DIR = Path("/var/lib/mailserver")

#: (name, protocol, port, tls) of the listeners written, each on 0.0.0.0 and ::.
_LISTENERS = (
    ("smtp", "smtp", 25, "starttls"),
    ("submission", "submission", 587, "starttls"),
    ("submissions", "submission", 465, "implicit"),
    ("imap", "imap", 143, "starttls"),
    ("imaps", "imap", 993, "implicit"),
)


def _toml_string(value: str) -> str:
    """A TOML basic string (backslash and quote escaped; no control characters
    reach here: paths and host names)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(hostname: str, domain: str, data_dir: Path, cert: Path | None,
                key: Path | None, http_port: int = 9280) -> str:
    """The configuration file quickstart writes (TOML).  Every other key keeps
    its default; ``conf/mailserver.production.toml`` in the source describes
    them all."""
    lines = [
        f"# Written by `{PROG} quickstart` for {domain}.  Every key and its default:",
        "# conf/mailserver.production.toml in the source.",
        f"hostname = {_toml_string(hostname)}",
        f"data_dir = {_toml_string(str(data_dir))}",
        f"domains = [{_toml_string(domain)}]",
        "demo_account = false",
        "workers = 0  # one per core",
        "",
    ]
    for name, protocol, port, tls in _LISTENERS:
        for suffix, address in (("", "0.0.0.0"), ("6", "::")):
            lines += [f"[listeners.{name}{suffix}]", f'protocol = "{protocol}"',
                      f'address = "{address}"', f"port = {port}", f'tls = "{tls}"', ""]
    lines += [
        "# Metrics, the admin API, client autoconfiguration and the MTA-STS policy:",
        "# loopback only; publish it through a TLS proxy (see the README).",
        "[listeners.http]", 'protocol = "http"', 'address = "127.0.0.1"',
        f"port = {http_port}", 'tls = "none"', "",
        "[tls]",
    ]
    if cert is not None and key is not None:
        lines += [f"cert_file = {_toml_string(str(cert))}",
                  f"key_file = {_toml_string(str(key))}"]
    else:
        lines.append(f"# A self-signed certificate is in {data_dir / 'tls'}; put a real one here:")
        lines += ['# cert_file = "/etc/mailserver/tls/fullchain.pem"',
                  '# key_file = "/etc/mailserver/tls/privkey.pem"']
    lines += [
        "", "[log]", 'format = "json"', 'level = "info"', "",
        "[dkim]", 'selector = "mail"', 'algorithms = ["rsa", "ed25519"]', "",
        "[checks]", "verify = true", "",
    ]
    return "\n".join(lines)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """``mailserver quickstart``: see the module docstring.  Exit status 0;
    CliError (an existing configuration or store, a bad address) and the
    admin errors go to ``main``: one ``mailserver: error:`` line, exit 1."""
    from mailserver.admin import dns, initialise, open_admin
    from mailserver.cli.outbound import print_zone
    from mailserver.config.loading import load
    from mailserver.store.store import Store
    from mailserver.tls import make_self_signed

    address = args.address.strip()
    local, _, domain = address.rpartition("@")
    domain = domain.lower().rstrip(".")
    if not local or "." not in domain:
        raise CliError(f"{address!r} is not an address of a domain (you@example.org)")
    hostname = (args.hostname or f"mail.{domain}").lower().rstrip(".")
    config_dir = Path(args.config_dir) if args.config_dir else _SYSTEM_CONFIG_DIR
    given_data = getattr(args, "data_dir", None)
    data_dir = Path(given_data) if given_data else (
        config_dir / "data" if args.config_dir else _SYSTEM_DATA_DIR)
    config_dir, data_dir = config_dir.absolute(), data_dir.absolute()
    config_path = config_dir / "mailserver.toml"
    if config_path.exists():
        raise CliError(f"{config_path} exists: quickstart never overwrites a configuration")
    if Store.exists(data_dir):
        raise CliError(f"a store exists in {data_dir}: quickstart never overwrites one")
    if bool(args.cert) != bool(args.key):
        raise CliError("--cert and --key go together")
    cert = Path(args.cert).absolute() if args.cert else None
    key = Path(args.key).absolute() if args.key else None

    config_dir.mkdir(parents=True, exist_ok=True)
    with open(config_path, "x", encoding="utf-8") as f:  # "x": never overwrite
        f.write(config_text(hostname, domain, data_dir, cert, key))
    os.chmod(config_path, 0o640)
    config = load(config_path)
    password = secrets.token_urlsafe(15)

    async def build() -> tuple[list[object], list[object]]:
        await initialise(config)
        if cert is None:
            tls_dir = data_dir / "tls"
            tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            await asyncio.to_thread(make_self_signed, hostname, tls_dir / "cert.pem",
                                    tls_dir / "key.pem")
        async with open_admin(config) as admin:
            await admin.add_account(address, password)
            await admin.add_alias(f"postmaster@{domain}", address)
            keys = [await admin.generate_dkim_key(domain, algorithm=alg,
                                                  selector=admin.dated_selector(alg))
                    for alg in ("rsa", "ed25519")]
            return list(await admin.dns_records(domain)), list(keys)

    records, keys = asyncio.run(build())
    print(f"Configuration: {config_path}")
    print(f"Data:          {data_dir}")
    print(f"Account:       {address}")
    print(f"Password:      {password}")
    print("               (shown only now; change it with "
          f"`{PROG} -c {config_path} user passwd {address}`)")
    print(f"Postmaster:    postmaster@{domain} -> {address}")
    print(f"DKIM keys:     {', '.join(k.selector for k in keys)}")  # type: ignore[attr-defined]
    print()
    print(f"; DNS records to publish for {domain} (and {hostname}'s own A/AAAA and PTR):")
    print_zone(domain, records)  # type: ignore[arg-type]
    print(f"; The MTA-STS policy the http listener serves at "
          f"https://mta-sts.{domain}/.well-known/mta-sts.txt:")
    for line in dns.mta_sts_policy(hostname).splitlines():
        print(f";   {line}")
    print()
    print("Then, as root (see the README, 'Running under systemd'):")
    print("  adduser --system --group --no-create-home --home /var/lib/mailserver mailserver")
    print(f"  chown -R mailserver:mailserver {data_dir}")
    print(f"  chgrp mailserver {config_path}")
    print("  cp systemd/mailserver.service /etc/systemd/system/ && systemctl daemon-reload")
    print("  systemctl enable --now mailserver")
    print(f"  {PROG} -c {config_path} dns check {domain}   # once the records are published")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``quickstart`` to ``sub``."""
    p = sub.add_parser("quickstart",
                       help="write a production configuration, the account, postmaster, "
                       "DKIM keys and a certificate, and print the DNS records")
    p.add_argument("address", metavar="ADDRESS", help="the first account, you@example.org")
    p.add_argument("--hostname", help="this server's public name (default mail.DOMAIN)")
    p.add_argument("-c", "--config-dir", dest="config_dir", metavar="DIR",
                   help=f"where mailserver.toml goes (default {_SYSTEM_CONFIG_DIR}); "
                   "its data then goes to DIR/data")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", default=argparse.SUPPRESS,
                   help=f"the data directory (default {_SYSTEM_DATA_DIR})")
    p.add_argument("--cert", help="a certificate chain (PEM) instead of a self-signed one")
    p.add_argument("--key", help="its private key (PEM)")
    p.set_defaults(func=cmd_quickstart)

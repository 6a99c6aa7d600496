"""``mailserver run | stop | status | check-config | init``: the daemon and its set-up."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import time

from mailserver.cli.common import load_config


def cmd_run(args: argparse.Namespace) -> int:
    """``mailserver run``: run the daemon until signalled; exit status as ``serve`` returns it."""
    from mailserver.process.main import serve  # imports uvloop and the servers: only for run

    return serve(load_config(args))


def cmd_stop(args: argparse.Namespace) -> int:
    """``mailserver stop``: SIGTERM to the daemon of the configuration's data
    directory (its pid file, ``process/pidfile.py``), then wait until it has
    exited (``--timeout`` seconds).  Exit status 0 when it stopped or was not
    running, 1 when it is still running after the timeout."""
    from mailserver.process import pidfile

    config = load_config(args)
    path = pidfile.path_for(config.data_dir)
    pid = pidfile.read_running(path)
    if pid is None:
        print(f"not running ({path} held by no process)")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"not running (pid {pid} is gone)")
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if pidfile.read_running(path) is None:
            print(f"stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    print(f"still running after {args.timeout:g} s (pid {pid})")
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    """``mailserver status``: whether the daemon runs (its pid file), and with
    an API token (``--token`` or ``$MAILSERVER_TOKEN``) and an ``http``
    listener, what ``GET /api/v1/status`` says: uptime, listeners, queue,
    store fill.  Never opens the store.  Exit status 0 when running, 3 when
    not (as LSB's ``status``), 1 when the API cannot be asked."""
    import json
    import ssl as ssl_mod
    import urllib.error
    import urllib.request

    from mailserver.process import pidfile

    config = load_config(args)
    pid = pidfile.read_running(pidfile.path_for(config.data_dir))
    if pid is None:
        print("not running")
        return 3
    print(f"running (pid {pid})")
    token = args.token or os.environ.get("MAILSERVER_TOKEN")
    http = next((x for x in config.listeners if x.protocol == "http"), None)
    if token is None or http is None:
        print("  (for uptime, queue and store: an http listener and an API token, "
              "--token or MAILSERVER_TOKEN; see mailserver token create)")
        return 0
    host = "127.0.0.1" if http.address in ("", "0.0.0.0", "::") else http.address
    scheme = "http" if http.tls == "none" else "https"
    host = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(f"{scheme}://{host}:{http.port}/api/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
    context = None
    if scheme == "https":  # our own daemon on this machine: its certificate may be self-signed
        context = ssl_mod.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_mod.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            status = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"  the API at {request.full_url} did not answer: {exc}")
        return 1
    hours, rest = divmod(int(status["uptime"]), 3600)
    print(f"  up {hours}h{rest // 60:02d}m since {status['started']}, "
          f"{status['workers']} worker(s)")
    for x in status["listeners"]:
        print(f"  listener  {x['name']}: {x['protocol']} on {x['address']}:{x['port']} "
              f"tls={x['tls']}")
    queue, store = status["queue"], status["store"]
    oldest = "" if queue["oldest_age"] is None else f", oldest {queue['oldest_age']} s"
    print(f"  queue     {queue['messages']} message(s){oldest}")
    print(f"  store     {store['used']} of {store['map_size']} octets "
          f"({store['fill'] * 100:.1f} %)")
    open_now = {p: n for p, n in status.get("connections", {}).items() if n}
    print("  open      " + (", ".join(f"{p} {n}" for p, n in open_now.items())
                            or "no connections"))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``mailserver check-config``: load the config (and TLS key pair, if set); print a summary.

    Exit status 0; ConfigError (bad file, unreadable certificate) goes to ``main``: exit 1.
    """
    config = load_config(args)
    if config.tls.cert_file is not None and config.tls.key_file is not None:
        from mailserver.tls import load_cert_chain

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        load_cert_chain(ctx, config.tls.cert_file, config.tls.key_file, config.source)
    print(f"configuration OK: {config.source or '<built-in>'}")
    print(f"  hostname  {config.hostname}")
    print(f"  data_dir  {config.data_dir}")
    print(f"  domains   {', '.join(config.domains) or '(none)'}")
    for lst in config.listeners:
        print(f"  listener  {lst.name}: {lst.protocol} on {lst.address}:{lst.port} tls={lst.tls}")
    out = config.outbound
    resolver = f"{out.resolver_address}:{out.resolver_port}" if out.resolver_address \
        else "system"
    relay = f"smart host {out.smart_host.host}:{out.smart_host.port}" if out.smart_host \
        else f"MX hosts on port {out.smtp_port}"
    print(f"  outbound  {relay}, DNS {resolver}, DKIM {'+'.join(config.dkim.algorithms)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """``mailserver init``: create the store in ``data_dir`` if there is none (else leave it).

    Exit status 0; errors (UserError, MailserverError, OSError) are raised for ``main``,
    which prints one ``mailserver: error:`` line and exits 1.
    """
    from mailserver.admin import initialise

    config = load_config(args)
    if asyncio.run(initialise(config)):
        print(f"created a new store in {config.data_dir}")
    else:
        print(f"a store exists in {config.data_dir}; left as it was")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add ``run``, ``stop``, ``status``, ``check-config`` and ``init`` to ``sub``."""
    p = sub.add_parser("run", parents=[common], help="run the daemon until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("stop", parents=[common],
                       help="stop the running daemon (SIGTERM) and wait until it has exited")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the daemon to exit (default 60)")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("status", parents=[common],
                       help="whether the daemon runs; with an API token, its uptime, "
                       "listeners, queue and store")
    p.add_argument("--token", help="an API token (default: $MAILSERVER_TOKEN)")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("check-config", parents=[common], help="validate the configuration")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("init", parents=[common],
                       help="create the data directory and an empty store (as the "
                       "daemon's first start does)")
    p.set_defaults(func=cmd_init)

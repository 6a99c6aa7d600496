"""``mailserver junk train|test|stats|reset``: the junk classifier of an
account (``junk/``), through the admin service the API would use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailserver.admin import AdminService
from mailserver.cli.common import CliError, admin_config, with_admin


def cmd_junk(args: argparse.Namespace) -> int:
    """``junk train ACCOUNT --spam PATH --ham PATH`` (mbox or Maildir),
    ``junk test ACCOUNT FILE`` (score and the deciding features),
    ``junk stats ACCOUNT``, ``junk reset ACCOUNT``, ``junk threshold ACCOUNT
    [VALUE | --reset]`` (show, set or clear the account's own threshold).
    Errors (UserError, OSError) are raised for ``main``."""
    config = admin_config(args)

    async def go(admin: AdminService) -> None:
        if args.action == "train":
            if args.spam is None and args.ham is None:
                raise CliError("give --spam PATH and/or --ham PATH")
            spam, ham = await admin.junk_train(args.account, args.spam, args.ham)
            print(f"trained {spam} spam and {ham} ham message(s) for {args.account}")
        elif args.action == "test":
            data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
            v = await admin.junk_test(args.account, data)
            print(f"X-Spam-Status: {v.score.header(v.threshold)}")
            for feature, p in v.score.top:
                print(f"  {p:6.3f}  {feature}")
        elif args.action == "stats":
            s = await admin.junk_stats(args.account)
            print(f"{args.account}: {s['spam']} spam, {s['ham']} ham trained; "
                  f"global model: {s['global_spam']} spam, {s['global_ham']} ham; "
                  f"threshold {s['threshold']:g} ({s['arm']})")
        elif args.action == "threshold":
            if args.reset or args.value is not None:
                value = None if args.reset else args.value
                await admin.junk_set_threshold(args.account, value)
            s = await admin.junk_stats(args.account)
            print(f"{args.account}: junk threshold {s['threshold']:g} ({s['arm']})")
        else:
            await admin.junk_reset(args.account)
            print(f"forgot the junk model of {args.account} (the global model keeps "
                  "what it learnt)")

    with_admin(config, go)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    """Add the ``junk`` command to ``sub``."""
    junk = sub.add_parser("junk", help="the junk classifier of an account")
    jsub = junk.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = jsub.add_parser("train", parents=[common],
                        help="train from an mbox or Maildir of spam and/or ham")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("--spam", type=Path, metavar="PATH")
    p.add_argument("--ham", type=Path, metavar="PATH")
    p = jsub.add_parser("test", parents=[common],
                        help="score a message file (- for stdin) and show why")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("file", metavar="FILE")
    for action, text in (("stats", "messages trained"),
                         ("reset", "forget the account's own model")):
        p = jsub.add_parser(action, parents=[common], help=text)
        p.add_argument("account", metavar="ACCOUNT")
    p = jsub.add_parser("threshold", parents=[common],
                        help="show, set (0-1, lower is stricter) or --reset the account's "
                        "own junk threshold")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("value", metavar="VALUE", type=float, nargs="?")
    p.add_argument("--reset", action="store_true",
                   help="back to the configured threshold")
    junk.set_defaults(func=cmd_junk)

"""Keeping updating contexts current, and CANCELUPDATE (RFC 5267 §4.3).

The contexts themselves (results, differences, responses) are
``mailserver.imap.contexts``; a SEARCH or SORT with ``RETURN (UPDATE)``
starts one (``searching.start_context``).  ``refresh`` runs after every sync
of the view, so updates reach the client with the command that noticed the
change, or at once during IDLE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailserver.errors import UserError
from mailserver.imap.commands.searching import run_search
from mailserver.imap.commands.sort import sort_uids
from mailserver.imap.selected import SelectedMailbox
from mailserver.protocol.imap.types import CancelUpdate, Command, SortArgs

if TYPE_CHECKING:
    from mailserver.imap.session import ImapSession


async def refresh(session: ImapSession, view: SelectedMailbox) -> None:
    """Search again for every context when the view moved since their
    results (``UpdateContexts.stale``) and queue the ``ADDTO``/``REMOVEFROM``
    responses (RFC 5267 §4.3.3, §4.3.4).  Call after the view's sync: new
    messages' EXISTS is out, so their sequence numbers are valid."""
    contexts = view.contexts
    state = view.state_key
    if not contexts.stale(state):
        return
    for ctx in list(contexts.by_tag.values()):
        hits = await run_search(session, view, ctx.args)
        if isinstance(ctx.args, SortArgs):
            new = await sort_uids(session, hits, ctx.args)
        else:
            new = [rec.uid for _, rec in hits]
        if contexts.by_tag.get(ctx.tag) is not ctx:
            continue  # cancelled meanwhile (a pipelined command cannot; be safe)
        line = contexts.changes(ctx, new, view.seq_of)
        if line is not None:
            session.write(line)
    contexts.mark(state)


async def cancelupdate(session: ImapSession, cmd: Command) -> None:
    """CANCELUPDATE (RFC 5267 §4.3.5): no more updates for the contexts of
    the named tags.  A tag without one is ``NO`` and cancels nothing (as
    ACAP's FREECONTEXT, RFC 2244 §6.5.1, which CONTEXT follows)."""
    view = session.selected
    assert view is not None
    args = cmd.args
    assert isinstance(args, CancelUpdate)
    unknown = view.contexts.cancel(args.tags)
    if unknown:
        raise UserError(f"No updating search with tag {unknown[0][:40]}")

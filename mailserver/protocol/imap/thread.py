"""THREAD (RFC 5256 §4): the ORDEREDSUBJECT and REFERENCES algorithms and the
response syntax.  Pure code, stdlib only.

::

    thread          = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    thread-alg      = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
    thread-data     = "THREAD" [SP 1*thread-list]
    thread-list     = "(" (thread-members / thread-nested) ")"
    thread-members  = nz-number *(SP nz-number) [SP thread-nested]
    thread-nested   = 2*thread-list

Design notes
------------
* The input is one ``ThreadItem`` per matching message, in mailbox order.
  The output is a forest of ``Node``; a node without a number is a dummy
  (a message that is referenced but not among the matches).
* Nothing here recurses over the thread structure: reply chains of thousands
  of messages are real, and References fields are attacker-controlled, so
  every walk uses an explicit stack.
* "Sent date" is RFC 5256 §2.2's: the Date: field, or INTERNALDATE when it is
  missing or unparsable; ties are broken by sequence number (§4 step 6).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailserver.protocol.imap.sortkeys import search_criteria
from mailserver.protocol.imap.tokens import Cursor
from mailserver.protocol.imap.types import ThreadArgs

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One message to thread.

    ``seq``: sequence number (the tie-break); ``number``: what the response
    lists (sequence number or UID); ``date``: sent date as POSIX seconds
    (§2.2, already defaulted to INTERNALDATE); ``subject``: base subject in
    comparison form (``ascii_casemap(base_subject(...)[0])``); ``is_reply``:
    the subject had a Re:/Fwd: marker; ``message_id``/``references``: parsed
    msg-ids (``parse_msg_ids``), ``references`` already falling back to the
    first In-Reply-To id (§4 step 1).
    """

    seq: int
    number: int
    date: int
    subject: str = ""
    is_reply: bool = False
    message_id: str | None = None
    references: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class Node:
    """One thread node: ``item`` is ``None`` for a dummy."""

    item: ThreadItem | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def sort_key(self) -> tuple[int, int]:
        """(date, seq) of the message, or of a dummy's first child (§4 step 6)."""
        node = self
        while node.item is None:
            if not node.children:
                return (0, 0)
            node = node.children[0]
        return (node.item.date, node.item.seq)


# ------------------------------------------------------------------- msg-ids

_COMMENT = re.compile(r"\([^()]*\)")
_MSG_ID = re.compile(r"<([^<>]+)>")
_WSP = re.compile(r"[ \t\r\n]+")


def parse_msg_ids(value: str | None) -> list[str]:
    """The valid msg-ids of a Message-ID/References/In-Reply-To value (RFC
    5322 §3.6.4: ``"<" id-left "@" id-right ">"``), in order, without their
    angle brackets.  RFC 5256 §4 step 1 threads by *valid* msg-ids only, so
    ``<1234>`` (no "@") links nothing, as in Dovecot, whose reading we follow
    otherwise too: comments are dropped, white space inside an id (obsolete
    CFWS) is removed, junk between ids is skipped."""
    if not value:
        return []
    for _ in range(3):  # nested comments, shallowly
        value = _COMMENT.sub(" ", value)
    out = []
    for m in _MSG_ID.finditer(value):
        ident = _WSP.sub("", m.group(1))
        left, at, right = ident.partition("@")
        if at and left and right:
            out.append(ident)
    return out


def references_of(references: str | None, in_reply_to: str | None) -> tuple[str, ...]:
    """§4 step 1: the References ids, or when there are none the first
    In-Reply-To id."""
    refs = parse_msg_ids(references)
    if not refs:
        refs = parse_msg_ids(in_reply_to)[:1]
    return tuple(refs)


# ------------------------------------------------------------ ORDEREDSUBJECT


def ordered_subject(items: Sequence[ThreadItem]) -> list[Node]:
    """§4 ORDEREDSUBJECT: messages grouped by base subject; in each group the
    earliest message is the parent of all the others (in date order); the
    groups are in the order of their first message's date."""
    groups: dict[str, list[ThreadItem]] = {}
    for it in sorted(items, key=lambda i: (i.subject, i.date, i.seq)):
        groups.setdefault(it.subject, []).append(it)
    roots = []
    for members in groups.values():
        root = Node(members[0])
        root.children = [Node(m, parent=root) for m in members[1:]]
        roots.append(root)
    roots.sort(key=Node.sort_key)
    return roots


# ---------------------------------------------------------------- REFERENCES


def _is_ancestor(candidate: Node, node: Node) -> bool:
    """True when ``candidate`` is ``node`` or one of its ancestors.  A node
    without children is nobody's ancestor: that shortcut keeps the usual
    case (a new message, a fresh dummy) from walking up long chains."""
    if not candidate.children:
        return candidate is node
    cur: Node | None = node
    while cur is not None:
        if cur is candidate:
            return True
        cur = cur.parent
    return False


def _unlink(child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _link(parent: Node, child: Node) -> None:
    child.parent = parent
    parent.children.append(child)


def references(items: Sequence[ThreadItem]) -> list[Node]:
    """§4 REFERENCES, steps 1 to 6."""
    table: dict[str, Node] = {}
    nodes: list[Node] = []
    # (1) One container per message, linked along its References.
    for it in items:
        node: Node | None = table.get(it.message_id) if it.message_id else None
        if node is None or node.item is not None:
            # No id, or a duplicate id: this message is unique (§4 step 1).
            node = Node(it)
            if it.message_id and it.message_id not in table:
                table[it.message_id] = node
        else:
            node.item = it
        nodes.append(node)
        chain = []
        for ref in it.references:
            ref_node = table.get(ref)
            if ref_node is None:
                ref_node = table[ref] = Node()
            chain.append(ref_node)
        # (1A) consecutive references are parent and child, unless the child
        # has a parent already or the link would make a loop.
        for parent, child in zip(chain, chain[1:], strict=False):
            if child.parent is None and not _is_ancestor(child, parent):
                _link(parent, child)
        # (1B) the last reference is this message's parent (replacing a link
        # made from a truncated References elsewhere); none: no parent.
        last = chain[-1] if chain else None
        if node.parent is not last:
            if last is None:
                _unlink(node)
            elif not _is_ancestor(node, last):
                _unlink(node)
                _link(last, node)
    # (2) The root set; (3) the id table is no longer needed.
    seen: set[int] = set()
    roots: list[Node] = []
    for node in list(table.values()) + nodes:
        if node.parent is None and id(node) not in seen:
            seen.add(id(node))
            roots.append(node)
    roots = _prune(roots)
    _sort(roots)  # so that step 5 does not depend on the order of the id table
    roots = _merge_subjects(roots)
    _sort(roots)
    return roots


def _post_order(roots: list[Node]) -> list[Node]:
    """Every node below ``roots`` (roots included), children before parents."""
    out: list[Node] = []
    stack: list[tuple[Node, bool]] = [(r, False) for r in roots]
    while stack:
        node, done = stack.pop()
        if done:
            out.append(node)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in node.children)
    return out


def _pruned(children: list[Node], *, at_root: bool) -> list[Node]:
    """(4) Dummies without children go; a dummy's children take its place,
    except at the root level when there are several of them."""
    out: list[Node] = []
    for c in children:
        if c.item is not None:
            out.append(c)
        elif not c.children:
            continue
        elif not at_root or len(c.children) == 1:
            out.extend(c.children)
        else:
            out.append(c)
    return out


def _prune(roots: list[Node]) -> list[Node]:
    for node in _post_order(roots):
        node.children = _pruned(node.children, at_root=False)
        for c in node.children:
            c.parent = node
    roots = _pruned(roots, at_root=True)
    for r in roots:
        r.parent = None
    return roots


def _earliest(node: Node) -> ThreadItem | None:
    """A dummy's subject comes from its first child (§4 step 5A): the one
    that sorts first, so the result does not depend on table order."""
    if node.item is not None:
        return node.item
    best = min((c for c in node.children if c.item is not None), key=Node.sort_key,
               default=None)
    return None if best is None else best.item


def _merge_subjects(roots: list[Node]) -> list[Node]:
    """(5) Threads whose roots share a base subject are merged."""
    subjects: dict[str, Node] = {}
    for root in roots:  # (5A-C) fill the subject table
        item = _earliest(root)
        if item is None or not item.subject:
            continue
        old = subjects.get(item.subject)
        if old is None or (root.item is None and old.item is not None) or (
            old.item is not None and old.item.is_reply
            and root.item is not None and not root.item.is_reply
        ):
            subjects[item.subject] = root
    result = list(roots)
    deleted: set[int] = set()
    for root in roots:  # (5D) merge
        if root.parent is not None:
            continue  # already merged under a new dummy
        item = _earliest(root)
        if item is None or not item.subject:
            continue
        table = subjects[item.subject]
        if table is root:
            continue
        if table.item is None and root.item is None:
            for c in root.children:
                _link(table, c)
            root.children = []
            deleted.add(id(root))
        elif table.item is None or (
            root.item is not None and root.item.is_reply and not table.item.is_reply
        ):
            _link(table, root)
        else:
            dummy = Node()
            _link(dummy, table)
            _link(dummy, root)
            subjects[item.subject] = dummy
            result.append(dummy)
    return [r for r in result if r.parent is None and id(r) not in deleted]


def _sort(roots: list[Node]) -> None:
    """(6) Siblings by sent date, then sequence number; a dummy counts with
    its first child's date, so children are sorted before their parents."""
    for node in _post_order(roots):
        node.children.sort(key=Node.sort_key)
    roots.sort(key=Node.sort_key)


# ------------------------------------------------------------------ response


def render(roots: Sequence[Node]) -> bytes:
    """The thread lists of a THREAD response (without ``* THREAD``), e.g.
    ``(2)(3 6 (4 23)(44 7 96))``; a dummy contributes no number (RFC 5256 §4:
    ``((3)(5))``).  A node with one child continues its list; several
    children become nested lists."""
    out: list[bytes] = []
    # Work items: a node to open as "(" ..., or a literal closing ")".
    stack: list[Node | bytes] = [r for r in reversed(roots)]
    while stack:
        top = stack.pop()
        if isinstance(top, bytes):
            out.append(top)
            continue
        out.append(b"(")
        node = top
        numbers: list[bytes] = []
        while True:
            if node.item is not None:
                numbers.append(b"%d" % node.item.number)
            if len(node.children) != 1:
                break
            node = node.children[0]
        out.append(b" ".join(numbers))
        if node.children:
            if numbers:
                out.append(b" ")
            stack.append(b")")
            stack.extend(reversed(node.children))
        else:
            out.append(b")")
    return b"".join(out)


# ------------------------------------------------------------------- grammar


def thread_args(cur: Cursor, uid: bool) -> ThreadArgs:
    """Everything after ``THREAD`` (see the module grammar).  An algorithm we
    do not implement is a BAD: it is outside the grammar we advertise."""
    cur.sp()
    algorithm = cur.keyword()
    if algorithm not in ALGORITHMS:
        raise cur.error(f"Unknown threading algorithm {algorithm[:40]}")
    cur.sp()
    key, charset, bad = search_criteria(cur)
    return ThreadArgs(algorithm, key, charset, bad)  # type: ignore[arg-type]

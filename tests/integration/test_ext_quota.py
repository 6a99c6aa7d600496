"""QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA, SETQUOTA refused, and APPEND /
COPY / MOVE over the account's quota answered ``NO [OVERQUOTA]``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from imapclient import IMAPClient
from support.server import ServerThread
from support.wire import ALICE, RawImap

CAROL = ("carol@example.test", "carol-secret")
QUOTA = 10 * 1024 + 1  # octets: the limit shows as 10 (units of 1024, rounded down)
MSG = b"Subject: q\r\n\r\n" + b"x" * 3000 + b"\r\n"


@pytest.fixture
def carol(server: ServerThread) -> Iterator[RawImap]:
    server.add_user(*CAROL, quota=QUOTA)
    c = RawImap(server.port("imap"))
    c.login(*CAROL)
    try:
        yield c
    finally:
        c.close()


def append(c: RawImap, tag: str, mailbox: str = "INBOX") -> bytes:
    return c.cmd(tag, f"APPEND {mailbox} {{{len(MSG)}+}}\r\n".encode() + MSG)[-1]


def test_capabilities(carol: RawImap) -> None:
    caps = carol.cmd("c", "CAPABILITY")[0].split()
    assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps
    assert b"QUOTASET" not in caps


def test_getquotaroot_and_getquota(carol: RawImap) -> None:
    assert carol.cmd("a", "GETQUOTAROOT INBOX") == [
        b'* QUOTAROOT "INBOX" ""\r\n', b'* QUOTA "" (STORAGE 0 10)\r\n',
        b"a OK GETQUOTAROOT completed\r\n"]
    assert append(carol, "b").startswith(b"b OK")
    # 3016 octets are 3 units when rounded up; every mailbox shares the root.
    assert carol.cmd("c", "GETQUOTAROOT Trash")[:2] == [
        b'* QUOTAROOT "Trash" ""\r\n', b'* QUOTA "" (STORAGE 3 10)\r\n']
    assert carol.cmd("d", 'GETQUOTA ""') == [
        b'* QUOTA "" (STORAGE 3 10)\r\n', b"d OK GETQUOTA completed\r\n"]
    assert carol.cmd("e", "GETQUOTA other")[-1].startswith(b"e NO [NONEXISTENT]")
    assert carol.cmd("f", "GETQUOTAROOT Nowhere")[-1].startswith(b"f NO [NONEXISTENT]")
    carol.cmd("s", "SELECT INBOX")  # valid in the selected state too
    assert carol.cmd("g", 'GETQUOTA ""')[-1].startswith(b"g OK")


def test_setquota_is_refused(carol: RawImap) -> None:
    assert carol.cmd("a", 'SETQUOTA "" (STORAGE 99999)')[-1].startswith(b"a NO [NOPERM]")
    assert carol.cmd("b", 'SETQUOTA "" (STORAGE')[-1].startswith(b"b BAD")


def test_over_quota_is_refused(carol: RawImap) -> None:
    for i in range(3):
        assert append(carol, f"a{i}").startswith(f"a{i} OK".encode())
    assert append(carol, "b").startswith(b"b NO [OVERQUOTA]")
    carol.cmd("s", "SELECT INBOX")
    assert carol.cmd("c", "COPY 1 Trash")[-1].startswith(b"c NO [OVERQUOTA]")
    # MOVE within one account frees what it takes: the usage does not grow.
    assert carol.cmd("d", "MOVE 1 Trash")[-1].startswith(b"d OK")
    # Expunging makes room again.
    carol.cmd("e", "STORE 1:* +FLAGS.SILENT (\\Deleted)")
    carol.cmd("f", "EXPUNGE")
    carol.cmd("g", "UNSELECT")
    carol.cmd("h", "SELECT Trash")
    carol.cmd("i", "STORE 1:* +FLAGS.SILENT (\\Deleted)")
    carol.cmd("j", "EXPUNGE")
    assert append(carol, "k").startswith(b"k OK")
    assert carol.cmd("l", 'GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 3 10)\r\n'


def test_unlimited_account_has_no_quota_root(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    c.login()
    assert c.cmd("a", "GETQUOTAROOT INBOX") == [
        b'* QUOTAROOT "INBOX"\r\n', b"a OK GETQUOTAROOT completed\r\n"]
    assert c.cmd("b", 'GETQUOTA ""')[-1].startswith(b"b NO [NONEXISTENT]")
    c.close()


def test_quota_not_before_login(server: ServerThread) -> None:
    c = RawImap(server.port("imap"))
    assert c.cmd("a", "GETQUOTAROOT INBOX")[-1].startswith(b"a BAD")
    c.close()


def test_quota_with_imapclient(server: ServerThread, carol: RawImap) -> None:
    assert append(carol, "a").startswith(b"a OK")
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*CAROL)
        roots, quotas = c.get_quota_root("INBOX")
        assert roots.mailbox == "INBOX" and roots.quota_roots == [""]
        assert [(q.quota_root, q.resource, q.usage, q.limit) for q in quotas] == [
            ("", "STORAGE", 3, 10)]
        assert [(q.resource, q.usage, q.limit) for q in c.get_quota()] == [("STORAGE", 3, 10)]
    with IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False) as c:
        c.login(*ALICE)
        assert c.get_quota_root("INBOX")[1] == []


def test_status_deleted_storage(carol: RawImap) -> None:
    """RFC 9208 §4.4: STATUS DELETED-STORAGE, in units of 1024 octets (rounded up)."""
    assert append(carol, "a").startswith(b"a OK")
    assert append(carol, "b").startswith(b"b OK")
    assert carol.cmd("c", "STATUS INBOX (DELETED-STORAGE)")[0] == (
        b'* STATUS "INBOX" (DELETED-STORAGE 0)\r\n')
    carol.cmd("d", "SELECT INBOX")
    carol.cmd("e", r"STORE 1 +FLAGS.SILENT (\Deleted)")
    assert carol.cmd("f", "STATUS INBOX (DELETED DELETED-STORAGE)")[0] == (
        b'* STATUS "INBOX" (DELETED 1 DELETED-STORAGE 3)\r\n')

"""Sender-authentication pieces without a server: DMARC records and alignment,
SPF evaluation and macros (RFC 7208's own examples), forged A-R removal, loops."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.checks import dmarc
from mailserver.checks.authentication import _authserv_id, from_domains, strip_forged
from mailserver.checks.rules import received_count
from mailserver.checks.spf_eval import check_helo, check_mail_from
from mailserver.dns import suffix
from mailserver.dns.bridge import TempDnsError
from mailserver.dns.resolver import Mx


class StubDns:
    """``ThreadDns``'s interface over dicts (name -> records); ``fail``: names that SERVFAIL."""

    def __init__(self, txt=None, a=None, mx=None, fail=()) -> None:
        self.records = {"TXT": txt or {}, "A": a or {}, "MX": mx or {}}
        self.fail = set(fail)
        self.asked: list[tuple[str, str]] = []

    def _get(self, kind: str, name: str) -> list:
        name = name.lower().rstrip(".")
        self.asked.append((kind, name))
        if name in self.fail:
            raise TempDnsError(name)
        return list(self.records[kind].get(name, []))

    def txt(self, name):
        return self._get("TXT", name)

    def a(self, name):
        return self._get("A", name)

    def aaaa(self, name):
        return []

    def mx(self, name):
        return self._get("MX", name)

    def ptr(self, name):
        return []


# -- DMARC ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("v=DMARC1; p=reject", dmarc.DmarcRecord("reject")),
    ("v=DMARC1;p=quarantine;sp=none;pct=20;adkim=s;aspf=s;rua=mailto:a@x.example",
     dmarc.DmarcRecord("quarantine", "none", 20, "s", "s", ("mailto:a@x.example",))),
    ("v=DMARC1; p=bogus; rua=mailto:a@x.example",  # §6.6.3: p=none when rua= is there
     dmarc.DmarcRecord("none", rua=("mailto:a@x.example",))),
    ("v=DMARC1; p=reject; pct=500; adkim=x", dmarc.DmarcRecord("reject")),
    ("v=DMARC1; p=bogus", None),
    ("v=spf1 -all", None),
    ("p=reject; v=DMARC1", None),  # v= must come first (§6.4)
])
def test_parse_record(text: str, expected: dmarc.DmarcRecord | None) -> None:
    assert dmarc.parse_record(text) == expected


@given(st.text(max_size=200))
def test_parse_record_never_raises(text: str) -> None:
    record = dmarc.parse_record("v=DMARC1;" + text)
    assert record is None or record.policy in dmarc.POLICIES


def test_organizational_domain_from_the_public_suffix_list() -> None:
    assert dmarc.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert dmarc.organizational_domain("Mail.Example.COM.") == "example.com"
    assert dmarc.organizational_domain("example.com") == "example.com"


def test_the_suffix_list_is_parsed_once_by_concurrent_first_users(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class Counted(suffix.PublicSuffixList):  # type: ignore[misc]
        def __init__(self) -> None:
            made.append(self)
            time.sleep(0.05)  # a slow parse: the others arrive meanwhile
            super().__init__()

    monkeypatch.setattr(suffix, "PublicSuffixList", Counted)
    monkeypatch.setattr(suffix, "_list", None)
    dmarc.organizational_domain.cache_clear()
    with ThreadPoolExecutor(8) as pool:
        orgs = list(pool.map(dmarc.organizational_domain,
                             [f"mail.example{i}.co.uk" for i in range(8)]))
    assert orgs == [f"example{i}.co.uk" for i in range(8)]
    assert len(made) == 1
    dmarc.organizational_domain.cache_clear()  # its answers came from the counted list


def _evaluate(records: dict, domain: str, spf=("none", ""), dkim=(), sample=0.0):
    return dmarc.evaluate(StubDns(txt=records).txt, domain, spf=spf, dkim=list(dkim),
                          sample=lambda: sample)


def test_alignment_relaxed_and_strict() -> None:
    relaxed = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    strict = {"_dmarc.example.com": ["v=DMARC1; p=reject; adkim=s; aspf=s"]}
    assert _evaluate(relaxed, "example.com", spf=("pass", "bounce.example.com")).result == "pass"
    assert _evaluate(strict, "example.com", spf=("pass", "bounce.example.com")).result == "fail"
    assert _evaluate(relaxed, "example.com", dkim=[("pass", "other.example")]).result == "fail"
    assert _evaluate(strict, "example.com", dkim=[("fail", "example.com"),
                                                  ("pass", "example.com")]).result == "pass"
    assert _evaluate(relaxed, "example.com", spf=("softfail", "example.com")).result == "fail"


def test_policy_discovery_and_sp() -> None:
    records = {"_dmarc.example.com": ["v=DMARC1; p=none; sp=reject"]}
    sub = _evaluate(records, "mail.example.com")
    assert (sub.result, sub.policy, sub.disposition) == ("fail", "reject", "reject")
    top = _evaluate(records, "example.com")
    assert (top.policy, top.disposition) == ("none", "none")
    assert _evaluate({}, "example.com").result == "none"
    two = {"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}
    assert _evaluate(two, "example.com").result == "none"  # several records: no DMARC
    failing = dmarc.evaluate(StubDns(fail=["_dmarc.example.com"]).txt, "example.com",
                             spf=("none", ""), dkim=[])
    assert failing.result == "temperror"


@pytest.mark.parametrize(("pct", "sample", "disposition"), [
    (100, 0.99, "reject"), (50, 0.49, "reject"), (50, 0.5, "quarantine"), (0, 0.0, "quarantine"),
])
def test_pct_sampling(pct: int, sample: float, disposition: str) -> None:
    records = {"_dmarc.example.com": [f"v=DMARC1; p=reject; pct={pct}"]}
    assert _evaluate(records, "example.com", sample=sample).disposition == disposition


# -- SPF (pyspf over our DNS hook) ------------------------------------------------

def test_spf_results_over_the_hook() -> None:
    dns = StubDns(
        txt={"pass.example": ["v=spf1 mx -all"], "fail.example": ["v=spf1 ip4:10.0.0.0/8 -all"],
             "inc.example": ["v=spf1 include:pass.example ~all"],
             "temp.example": ["v=spf1 -all"]},
        mx={"pass.example": [Mx(10, "mx.pass.example")]},
        a={"mx.pass.example": ["192.0.2.3"]},
        fail=["temp.example"],
    )
    ip = "192.0.2.3"
    assert check_mail_from(dns, ip, "a@pass.example", "h.example").result == "pass"
    assert check_mail_from(dns, ip, "a@inc.example", "h.example").result == "pass"
    assert check_mail_from(dns, ip, "a@fail.example", "h.example").result == "fail"
    assert check_mail_from(dns, ip, "a@temp.example", "h.example").result == "temperror"
    assert check_mail_from(dns, ip, "a@none.example", "h.example").result == "none"
    assert check_helo(dns, ip, "[192.0.2.3]").result == "none"  # not a domain
    helo = check_helo(dns, ip, "pass.example")
    assert (helo.result, helo.domain) == ("pass", "pass.example")
    # The null reverse-path is checked as postmaster@HELO (RFC 7208 §2.4).
    assert check_mail_from(dns, ip, "<>", "pass.example", helo_result=helo) is helo


def test_spf_lookup_limits() -> None:
    # RFC 7208 §4.6.4: more than 10 DNS-querying terms, or more than 2 void lookups.
    chain = {f"l{i}.example": [f"v=spf1 include:l{i + 1}.example -all"] for i in range(12)}
    dns = StubDns(txt=chain)
    assert check_mail_from(dns, "192.0.2.3", "a@l0.example", "h").result == "permerror"
    voids = StubDns(txt={"v.example": ["v=spf1 a:n1.example a:n2.example a:n3.example -all"]})
    assert check_mail_from(voids, "192.0.2.3", "a@v.example", "h").result == "permerror"


@pytest.mark.parametrize(("macro", "expanded"), [
    # RFC 7208 §7.4, for <strong-bad@email.example.com> from 192.0.2.3.
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
])
def test_rfc7208_macro_examples(macro: str, expanded: str) -> None:
    import spf

    q = spf.query(i="192.0.2.3", s="strong-bad@email.example.com", h="mx.example.org")
    assert q.expand(macro) == expanded


def test_rfc7208_ipv6_macro_example() -> None:
    import spf

    q = spf.query(i="2001:db8::cb01", s="strong-bad@email.example.com", h="mx.example.org")
    assert q.expand("%{ir}.%{v}._spf.%{d2}").lower() == (  # DNS names: any case
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com")


# -- Authentication-Results and loops ---------------------------------------------

@pytest.mark.parametrize(("value", "authserv_id"), [
    (b" mx.example.test; spf=pass", "mx.example.test"),
    (b" (forged) MX.Example.Test 1; none", "mx.example.test"),
    (b"\r\n\tother.example;\r\n\tdkim=pass", "other.example"),
    (b" mx.example.test", "mx.example.test"),
])
def test_authserv_id(value: bytes, authserv_id: str) -> None:
    assert _authserv_id(value) == authserv_id


def test_strip_forged_keeps_others_and_the_body() -> None:
    msg = (b"Authentication-Results: mx.example.test; spf=pass\r\n"
           b"Subject: x\r\n"
           b"Authentication-Results: other.example;\r\n\tdkim=pass\r\n"
           b"authentication-results: mx.example.test;\r\n dkim=pass\r\n"
           b"\r\nAuthentication-Results: mx.example.test; in the body\r\n")
    assert strip_forged(msg, "mx.example.test") == (
        b"Subject: x\r\nAuthentication-Results: other.example;\r\n\tdkim=pass\r\n"
        b"\r\nAuthentication-Results: mx.example.test; in the body\r\n")
    assert strip_forged(b"Subject: x\r\n\r\nbody\r\n", "mx.example.test") is None


def test_from_domains() -> None:
    assert from_domains(b"From: A <a@Example.COM>, b@example.com\r\n\r\n") == ["example.com"]
    assert from_domains(b"From: a@one.example\r\nFrom: b@two.example\r\n\r\n") == [
        "one.example", "two.example"]
    assert from_domains(b"Subject: none\r\n\r\n") == []


def test_received_count() -> None:
    assert received_count(b"Received: a\r\nreceived : b\r\nX: y\r\n\r\nReceived: body\r\n") == 2
    assert received_count(b"\r\nReceived: only body\r\n") == 0
    assert received_count(b"Received: a\r\n") == 1


_FIELDS = st.sampled_from([
    b"Authentication-Results: mx.example.test; spf=pass\r\n",
    b"Authentication-Results:(c) mx.example.test;\r\n\tdkim=pass\r\n",
    b"authentication-results: MX.EXAMPLE.TEST\r\n",
    b"Authentication-Results: other.example; spf=pass\r\n",
    b"Authentication-Results: mx.example.test.evil; spf=pass\r\n",
    b"Subject: Authentication-Results: mx.example.test;\r\n",
    b"X-Folded: a\r\n Authentication-Results: mx.example.test\r\n",
])


@given(st.lists(_FIELDS, max_size=8), st.binary(max_size=60))
def test_strip_forged_removes_exactly_the_claims(fields: list[bytes], body: bytes) -> None:
    msg = b"".join(fields) + b"\r\n" + body
    out = strip_forged(msg, "mx.example.test")
    result = msg if out is None else out
    kept = [f for f in fields if not f.lower().startswith(b"authentication-results:")
            or _authserv_id(f.split(b":", 1)[1]) != "mx.example.test"]
    assert result == b"".join(kept) + b"\r\n" + body

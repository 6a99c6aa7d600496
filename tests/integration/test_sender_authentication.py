"""SPF, DKIM, DMARC and ARC verdicts on the MX listener, against a loopback DNS server.

Every verdict is asserted on the wire (the reply to DATA) and in the
delivered message (its Authentication-Results field, its mailbox and
``$Junk``).  Messages are signed here with dkimpy; the RFC 8463 example of
the shared corpus is verified with the RFC's own keys.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import smtplib
from collections.abc import Iterator

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support.dnsserver import DnsServer
from support.server import CORPUS, ServerThread, make_config, running_server

from mailserver.checks.dmarc_log import DmarcLog
from mailserver.config import ChecksSettings
from mailserver.dkim.keys import generate_key

WEAK_RSA_512 = b"""-----BEGIN PRIVATE KEY-----
MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9AgEAAkEA7FjjcuNR4WIBvo0e
b6Wqq0gPVJNf/ow29ymPT5RlPH/m9RM9YLoM1d029DqT0biIsZkRiGxAR86+xrgq
CJnuUQIDAQABAkEA22piLgSPvXepOufz+56HZWAOq2vuUHiHhsoUe8K+gXxLgpl2
n4No5QsNeAo921TvgIdCSN2b2Uma3M5NV4PggQIhAPkc25FFBjE5VakXaEo2mnXT
wr+ZtFJxC5V2+1su2RJZAiEA8uGuNm8OLUmwqzon9IEgvOHDjx6CUiuIBt/k46Dr
jLkCIQDmOpZujwVnDt8tNHXtSMO+K+TsIUj3fITBMUKjBgwWmQIhAI60PtHIyoGd
bGoOj28/d2bDF0291UBGR3QSlL+RyxQxAiEAi+deko3Puwd2E4UtP4G+zcVb8ms0
cRxrFNxNjm6iu1o=
-----END PRIVATE KEY-----
"""
# RFC 8463 Appendix A.2: the keys of the example's two signatures.
RFC8463_ED25519 = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RFC8463_RSA = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhd"
    "R6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5"
    "QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)


def _dkimpy_key(pem: bytes) -> bytes:
    """A private key as dkimpy signs with: PKCS#1 PEM (RSA) or the base64 seed (Ed25519)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw)


def _public_txt(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


@dataclasses.dataclass
class World:
    dns: DnsServer
    server: ServerThread
    keys: dict[str, bytes]  # name -> dkimpy private key


def message(from_domain: str, subject: str = "hello", extra: bytes = b"") -> bytes:
    return (
        f"From: Sender <someone@{from_domain}>\r\nTo: alice@example.test\r\n"
        f"Subject: {subject}\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@{from_domain}>\r\n".encode()
        + extra + b"\r\nThe body.\r\n"
    )


def sign(msg: bytes, key: bytes, domain: str, selector: str, *, algo: bytes = b"rsa-sha256",
         length: bool = False) -> bytes:
    return dkim.sign(msg, selector.encode(), domain.encode(), key,
                     canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algo,
                     include_headers=[b"from", b"to", b"subject", b"date"],
                     length=length) + msg


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    dns = DnsServer()
    dns.start()
    add = dns.add
    keys: dict[str, bytes] = {}
    for name, algo in (("rsa", "rsa"), ("ed", "ed25519"), ("arc", "rsa"), ("rogue", "rsa")):
        pem, txt = generate_key("signer.test", "s", algo)
        keys[name] = _dkimpy_key(pem)
        keys[name + "_txt"] = txt.encode()
    # SPF: the client (127.0.0.1) is allowed for spf-pass.test only.
    add("spf-pass.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    add("_dmarc.spf-pass.test", "TXT", "v=DMARC1; p=reject")
    add("spf-fail.test", "TXT", "v=spf1 -all")
    add("_dmarc.spf-fail.test", "TXT", "v=DMARC1; p=reject; rua=mailto:d@spf-fail.test")
    add("softfail.test", "TXT", "v=spf1 ~all")
    add("neutral.test", "TXT", "v=spf1 ?all")
    add("permerror.test", "TXT", "v=spf1 ip4:1.2.3 -all")
    add("quarantine.test", "TXT", "v=spf1 -all")
    add("_dmarc.quarantine.test", "TXT", "v=DMARC1; p=quarantine")
    add("sampled.test", "TXT", "v=spf1 -all")
    add("_dmarc.sampled.test", "TXT", "v=DMARC1; p=reject; pct=0")  # all to the milder
    add("overridden.test", "TXT", "v=spf1 -all")
    add("_dmarc.overridden.test", "TXT", "v=DMARC1; p=reject")
    add("strict.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    add("_dmarc.strict.test", "TXT", "v=DMARC1; p=reject; aspf=s")
    add("sub.strict.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    # The organizational domain's sp= governs its subdomains (RFC 7489 §6.6.3).
    add("org.test", "TXT", "v=spf1 -all")
    add("_dmarc.org.test", "TXT", "v=DMARC1; p=none; sp=reject")
    add("deep.org.test", "TXT", "v=spf1 -all")
    # DKIM signers, each with a reject policy that only an aligned pass satisfies.
    for domain, sel, txt in (("rsa.test", "s", keys["rsa_txt"]), ("ed.test", "e", keys["ed_txt"]),
                             ("lists.trusted.test", "arc", keys["arc_txt"]),
                             ("rogue.test", "arc", keys["rogue_txt"])):
        add(f"{sel}._domainkey.{domain}", "TXT", txt.decode())
        add(domain, "TXT", "v=spf1 -all")
        add(f"_dmarc.{domain}", "TXT", "v=DMARC1; p=reject")
    add("weak.test", "TXT", "v=spf1 -all")
    add("w._domainkey.weak.test", "TXT", _public_txt(WEAK_RSA_512))
    add("_dmarc.weak.test", "TXT", "v=DMARC1; p=reject")
    add("brisbane._domainkey.football.example.com", "TXT", RFC8463_ED25519)
    add("test._domainkey.football.example.com", "TXT", RFC8463_RSA)
    # DNS failures: SPF of tempfail.test answers SERVFAIL.
    add("tempfail.test", "TXT", "v=spf1 -all")
    dns.fail("tempfail.test")
    add("_dmarc.tempfail.test", "TXT", "v=DMARC1; p=reject")
    add("tempnone.test", "TXT", "v=spf1 -all")
    dns.fail("tempnone.test")
    add("_dmarc.tempnone.test", "TXT", "v=DMARC1; p=none")
    config = make_config(tmp_path_factory.mktemp("auth"))
    config = dataclasses.replace(
        config,
        outbound=dataclasses.replace(config.outbound, resolver_address=dns.address,
                                     resolver_port=dns.port),
        checks=ChecksSettings(verify=True, arc_trusted_sealers=("lists.trusted.test",),
                              dmarc_override={"overridden.test": "none"}),
    )
    with running_server(config) as server:
        yield World(dns, server, keys)
    dns.stop()


def send(world: World, msg: bytes, mail_from: str, *, helo: str = "client.spf-pass.test"
         ) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", world.server.port("smtp")) as smtp:
        smtp.ehlo(helo)
        assert smtp.mail(mail_from)[0] == 250
        assert smtp.rcpt("alice@example.test")[0] == 250
        code, text = smtp.data(msg)
    return code, text


def delivered(world: World, subject: str, mailbox: str = "INBOX") -> tuple[bytes, object]:
    """The stored message whose Subject is ``subject`` in alice's ``mailbox``, and its record."""
    srv = world.server
    box = srv.call(srv.store.get_mailbox, "alice@example.test", mailbox)
    for record in srv.call(srv.store.list_messages, box.id):
        blob = srv.call(srv.store.get_blob, record.blob_id)
        if f"\r\nSubject: {subject}\r\n".encode() in blob:
            return blob, record
    raise AssertionError(f"{subject!r} not in {mailbox}")


def auth_results(blob: bytes) -> str:
    """Our Authentication-Results value, unfolded."""
    m = re.search(rb"^Authentication-Results: (mx\.example\.test;[^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", blob,
                  re.MULTILINE)
    assert m, blob[:600]
    return re.sub(r"\r\n[ \t]", " ", m.group(1).decode())


def test_spf_pass_and_dmarc_pass(world: World) -> None:
    code, _ = send(world, message("spf-pass.test", "spf pass"), "a@spf-pass.test")
    assert code == 250
    ar = auth_results(delivered(world, "spf pass")[0])
    assert "spf=pass smtp.mailfrom=spf-pass.test" in ar
    assert "spf=none smtp.helo=client.spf-pass.test" in ar  # the HELO name has no record
    assert "dkim=none" in ar
    assert "dmarc=pass" in ar and "header.from=spf-pass.test" in ar


@pytest.mark.parametrize(("domain", "result"), [
    ("softfail.test", "softfail"), ("neutral.test", "neutral"), ("permerror.test", "permerror"),
    ("no-record.test", "none"),
])
def test_spf_results_are_recorded(world: World, domain: str, result: str) -> None:
    code, _ = send(world, message(domain, f"spf {result}"), f"a@{domain}")
    assert code == 250
    ar = auth_results(delivered(world, f"spf {result}")[0])
    assert f"spf={result} " in ar and f"smtp.mailfrom={domain}" in ar
    assert "dmarc=none" in ar


def test_null_sender_uses_the_helo_identity(world: World) -> None:
    code, _ = send(world, message("spf-pass.test", "bounce"), "<>", helo="spf-pass.test")
    assert code == 250
    ar = auth_results(delivered(world, "bounce")[0])
    assert "spf=pass smtp.helo=spf-pass.test" in ar and "smtp.mailfrom" not in ar
    assert "dmarc=pass" in ar


def test_dmarc_reject_refuses_at_end_of_data(world: World) -> None:
    code, text = send(world, message("spf-fail.test", "forged"), "a@spf-fail.test")
    assert (code, text[:5]) == (550, b"5.7.1")
    with pytest.raises(AssertionError):
        delivered(world, "forged")
    # Recorded for the aggregate report the domain asked for (rua=, RFC 7489 §7.2).
    log = DmarcLog(world.server.config.data_dir / "dmarc")
    today = dt.datetime.now(dt.UTC).date()
    recorded = log.read(today - dt.timedelta(days=1)) + log.read(today)  # midnight-proof
    lines = [r for r in recorded if r["header_from"] == "spf-fail.test"]
    assert lines and lines[-1]["disposition"] == "reject"
    assert lines[-1]["source_ip"] == "127.0.0.1" and lines[-1]["spf_aligned"] == "fail"
    assert lines[-1]["policy_published"]["p"] == "reject"
    assert not [r for r in recorded if r["header_from"] == "spf-pass.test"]  # no rua=


def test_dmarc_quarantine_goes_to_junk(world: World) -> None:
    code, _ = send(world, message("quarantine.test", "suspect"), "a@quarantine.test")
    assert code == 250
    blob, record = delivered(world, "suspect", "Junk")
    assert "$Junk" in record.flags
    ar = auth_results(blob)
    assert "dmarc=fail (p=quarantine dis=quarantine)" in ar


def test_quarantine_without_a_junk_mailbox_lands_in_inbox_marked(world: World) -> None:
    srv = world.server
    srv.run(srv.store.delete_mailbox("bob@example.test", "Junk"))
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("a@quarantine.test")
        smtp.rcpt("alice@example.test")
        smtp.rcpt("bob@example.test")
        assert smtp.data(message("quarantine.test", "no junk box"))[0] == 250
    for account in ("alice@example.test", "bob@example.test"):  # all-or-nothing: both INBOX
        box = srv.call(srv.store.get_mailbox, account, "INBOX")
        records = srv.call(srv.store.list_messages, box.id)
        assert any("$Junk" in r.flags for r in records)


@pytest.mark.parametrize(("domain", "comment"), [
    ("sampled.test", "p=reject dis=quarantine"),  # pct=0: the milder policy (§6.6.4)
    ("overridden.test", "p=reject dis=none"),      # our per-domain override
])
def test_pct_and_override_soften_the_policy(world: World, domain: str, comment: str) -> None:
    code, _ = send(world, message(domain, f"soft {domain}"), f"a@{domain}")
    assert code == 250
    mailbox = "Junk" if "quarantine" in comment.split("dis=")[1] else "INBOX"
    ar = auth_results(delivered(world, f"soft {domain}", mailbox)[0])
    assert f"dmarc=fail ({comment})" in ar


def test_strict_spf_alignment(world: World) -> None:
    # MAIL FROM sub.strict.test passes SPF, but aspf=s wants exactly strict.test.
    code, text = send(world, message("strict.test", "strict"), "a@sub.strict.test")
    assert (code, text[:5]) == (550, b"5.7.1")


def test_subdomain_policy_from_the_organizational_domain(world: World) -> None:
    code, _ = send(world, message("deep.org.test", "deep"), "a@deep.org.test")
    assert code == 550


@pytest.mark.parametrize(("domain", "selector", "key", "algo"), [
    ("rsa.test", "s", "rsa", b"rsa-sha256"), ("ed.test", "e", "ed", b"ed25519-sha256"),
])
def test_dkim_pass_satisfies_dmarc(world: World, domain: str, selector: str, key: str,
                                   algo: bytes) -> None:
    subject = f"signed {key}"
    msg = sign(message(domain, subject), world.keys[key], domain, selector, algo=algo)
    code, _ = send(world, msg, f"a@{domain}")  # SPF fails (-all): DKIM alone aligns
    assert code == 250
    ar = auth_results(delivered(world, subject)[0])
    assert f"dkim=pass header.d={domain}" in ar and f"header.a={algo.decode()}" in ar
    assert "spf=fail" in ar and "dmarc=pass" in ar


def test_broken_signature_fails(world: World) -> None:
    msg = sign(message("rsa.test", "tampered"), world.keys["rsa"], "rsa.test", "s")
    msg = msg.replace(b"The body.", b"The b0dy.")
    code, text = send(world, msg, "a@rsa.test")
    assert (code, text[:5]) == (550, b"5.7.1")


def test_weak_rsa_key_fails(world: World) -> None:
    key = _dkimpy_key(WEAK_RSA_512)
    msg = sign(message("weak.test", "weak"), key, "weak.test", "w")
    code, _ = send(world, msg, "a@weak.test")
    assert code == 550  # RFC 8301: a 512-bit signature is no pass, DMARC fails


def test_body_length_tag_with_appended_content(world: World) -> None:
    msg = sign(message("rsa.test", "length"), world.keys["rsa"], "rsa.test", "s", length=True)
    msg += b"Appended by someone else.\r\n"
    code, _ = send(world, msg, "a@rsa.test")
    assert code == 550  # dkim=policy is no pass


def test_rfc8463_example_both_signatures_pass(world: World) -> None:
    raw = (CORPUS / "messages" / "148-rfc8463-two-dkim-no-mime.eml").read_bytes()
    msg = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    code, _ = send(world, msg, "joe@football.example.com")
    assert code == 250
    ar = auth_results(delivered(world, "Is dinner ready?")[0])
    assert ar.count("dkim=pass header.d=football.example.com") == 2
    assert "header.a=ed25519-sha256" in ar and "header.a=rsa-sha256" in ar


def test_forged_authentication_results_are_removed(world: World) -> None:
    extra = (b"Authentication-Results: mx.example.test; dmarc=pass header.from=x\r\n"
             b"Authentication-Results: MX.EXAMPLE.TEST (comment);\r\n spf=pass\r\n"
             b"Authentication-Results: other.example; spf=pass\r\n")
    code, _ = send(world, message("spf-pass.test", "forged ar", extra), "a@spf-pass.test")
    assert code == 250
    blob = delivered(world, "forged ar")[0]
    head = blob.partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"authentication-results: mx.example.test") == 1  # ours only
    assert b"header.from=x" not in head and b"(comment)" not in head
    assert b"authentication-results: other.example; spf=pass" in head


def _arc_sealed(world: World, key: str, sealer: str, subject: str) -> bytes:
    # What a mailing list does: it received the author's mail, verified it
    # (its own A-R), changed the body (footer) and sealed the result.
    msg = message("spf-fail.test", subject)
    msg = (f"Authentication-Results: {sealer}; spf=pass smtp.mailfrom=spf-fail.test\r\n"
           .encode() + msg + b"-- \r\nlist footer\r\n")
    fields = dkim.arc_sign(msg, b"arc", sealer.encode(), world.keys[key], sealer.encode(),
                           include_headers=[b"from", b"to", b"subject", b"date"])
    return b"".join(fields) + msg


def test_trusted_arc_sealer_overrides_dmarc_failure(world: World) -> None:
    msg = _arc_sealed(world, "arc", "lists.trusted.test", "via list")
    code, _ = send(world, msg, "list-bounces@lists.trusted.test")
    assert code == 250
    ar = auth_results(delivered(world, "via list")[0])
    assert "arc=pass" in ar and "header.as-d=lists.trusted.test" in ar
    assert "dmarc=fail (p=reject dis=none arc=trusted)" in ar


def test_untrusted_arc_sealer_does_not(world: World) -> None:
    msg = _arc_sealed(world, "rogue", "rogue.test", "via rogue")
    code, _ = send(world, msg, "x@rogue.test")
    assert code == 550


def test_temperror_defers_only_where_the_policy_asks(world: World) -> None:
    code, text = send(world, message("tempfail.test", "temp reject"), "a@tempfail.test")
    assert (code, text[:5]) == (451, b"4.7.0")  # p=reject, and SPF could not be judged
    code, _ = send(world, message("tempnone.test", "temp none"), "a@tempnone.test")
    assert code == 250  # p=none: delivered, the result recorded
    ar = auth_results(delivered(world, "temp none")[0])
    assert "spf=temperror" in ar


def test_submission_is_not_judged(world: World) -> None:
    hooks = world.server.app.services.smtp_hooks
    assert "sender_authentication" in hooks["smtp"].pipeline.names
    assert "sender_authentication" not in hooks["submission"].pipeline.names

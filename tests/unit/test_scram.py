"""The sans-IO SCRAM-SHA-256 server (RFC 5802, RFC 7677) against the RFC's
own example exchange, its message parsers against hostile input, channel
binding rules (RFC 5802 §6), and SASLprep (RFC 4013 §3 examples)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.protocol.sasl.saslprep import SaslprepError, saslprep
from mailserver.protocol.sasl.scram import (
    ScramFailed,
    ScramServer,
    ScramSyntaxError,
    derive_keys,
    parse_client_final,
    parse_client_first,
)

# RFC 7677 §3: user "user", password "pencil".
C_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
S_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
S_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
C_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
           b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
S_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def no_binding(name: str) -> bytes | None:
    return None


def server(**kw: object) -> ScramServer:
    args: dict = {"plus": False, "plus_offered": False, "channel_binding": no_binding,
                  "nonce": S_NONCE}
    args.update(kw)
    return ScramServer(**args)


def test_rfc7677_example_exchange() -> None:
    stored, key = derive_keys("pencil", SALT, 4096)
    s = server()
    first = s.receive_client_first(C_FIRST)
    assert first.username == "user" and first.cb_flag == "n"
    assert s.server_first(SALT, 4096) == S_FIRST
    assert s.receive_client_final(C_FINAL, stored, key) == S_FINAL


def test_wrong_password_is_an_invalid_proof() -> None:
    stored, key = derive_keys("pencil2", SALT, 4096)
    s = server()
    s.receive_client_first(C_FIRST)
    s.server_first(SALT, 4096)
    with pytest.raises(ScramFailed) as err:
        s.receive_client_final(C_FINAL, stored, key)
    assert err.value.value == "invalid-proof"


def test_nonce_and_channel_binding_must_match() -> None:
    stored, key = derive_keys("pencil", SALT, 4096)
    s = server()
    s.receive_client_first(C_FIRST)
    s.server_first(SALT, 4096)
    with pytest.raises(ScramFailed) as err:
        s.receive_client_final(C_FINAL.replace(b"c=biws", b"c=eSws"), stored, key)  # "y,,"
    assert err.value.value == "channel-bindings-dont-match"
    s = server()
    s.receive_client_first(C_FIRST)
    s.server_first(SALT, 4096)
    with pytest.raises(ScramFailed):
        s.receive_client_final(C_FINAL.replace(b"k0,p=", b"k1,p="), stored, key)


def test_channel_binding_rules() -> None:
    # -PLUS demands "p="; plain SCRAM refuses "p="; "y" is a downgrade when -PLUS was offered.
    with pytest.raises(ScramFailed):
        server(plus=True).receive_client_first(C_FIRST)
    with pytest.raises(ScramFailed):
        server().receive_client_first(b"p=tls-server-end-point,,n=user,r=abc")
    with pytest.raises(ScramFailed) as err:
        server(plus_offered=True).receive_client_first(b"y,,n=user,r=abc")
    assert err.value.value == "server-does-support-channel-binding"
    server().receive_client_first(b"y,,n=user,r=abc")  # -PLUS not offered: fine
    with pytest.raises(ScramFailed) as err:
        server(plus=True).receive_client_first(b"p=tls-unique,,n=user,r=abc")
    assert err.value.value == "unsupported-channel-binding-type"
    # Another user's authorization identity is refused (as for PLAIN).
    with pytest.raises(ScramFailed):
        server().receive_client_first(b"n,a=admin,n=user,r=abc")
    server().receive_client_first(b"n,a=user,n=user,r=abc")


def test_plus_exchange_binds_the_connection() -> None:
    data = b"\x01" * 32
    stored, key = derive_keys("pencil", SALT, 4096)
    gs2 = b"p=tls-server-end-point,,"
    s = server(plus=True, channel_binding=lambda n: data if n == "tls-server-end-point" else None)
    s.receive_client_first(gs2 + b"n=user,r=abc")
    s.server_first(SALT, 4096)
    # A client bound to another channel (other data) fails.
    c = base64.b64encode(gs2 + b"\x02" * 32).decode()
    with pytest.raises(ScramFailed) as err:
        s.receive_client_final(f"c={c},r=abc{S_NONCE},p=AAAA".encode(), stored, key)
    assert err.value.value == "channel-bindings-dont-match"


@pytest.mark.parametrize("bad", [
    b"", b"n", b"n,,", b"x,,n=user,r=a", b"n,,r=a,n=user", b"n,,n=,r=a", b"n,,n=user",
    b"n,,n=us=2Xer,r=a", b"n,,n=user,r=a,b", b"m=x,n,,n=user,r=a", b"n,,m=ext,n=user,r=a",
    b"n,,n=user,r=a\xff", b"n,,n=user,r=a,b",
])
def test_client_first_syntax_errors(bad: bytes) -> None:
    with pytest.raises((ScramSyntaxError, ScramFailed)):
        server().receive_client_first(bad)


@given(st.binary(max_size=200))
def test_parsers_refuse_with_our_errors_only(data: bytes) -> None:
    for parse in (parse_client_first, parse_client_final):
        try:
            parse(data)
        except ScramSyntaxError:
            pass


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                      blacklist_characters=",="), min_size=1, max_size=20),
       st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                      blacklist_characters=","), min_size=1, max_size=30))
def test_client_first_round_trip(user: str, nonce: str) -> None:
    first = parse_client_first(f"n,,n={user},r={nonce}".encode())
    assert first.username == saslprep(user) and first.nonce == nonce
    assert first.bare == f"n={user},r={nonce}"


@pytest.mark.parametrize(("given_", "prepared"), [
    ("I\u00adX", "IX"),  # soft hyphen mapped to nothing
    ("user", "user"),
    ("USER", "USER"),  # case preserved
    ("\u00aa", "a"),  # NFKC
    ("\u2168", "IX"),  # NFKC
])
def test_saslprep_rfc4013_examples(given_: str, prepared: str) -> None:
    assert saslprep(given_) == prepared


@pytest.mark.parametrize("bad", ["\u0007", "\u0627\u0031"])  # prohibited; bidi check
def test_saslprep_refusals(bad: str) -> None:
    with pytest.raises(SaslprepError):
        saslprep(bad)

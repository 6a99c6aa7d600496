"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, the server's side (RFC 5802, RFC 7677).

Sans-IO: ``ScramServer`` is fed the client's two messages (already base64-
decoded by the front end) and returns ours; it never sees a socket, the store
or a clock.  One exchange (RFC 5802 §5)::

    C: client-first-message   n,,n=user,r=<c-nonce>
    S: server-first-message   r=<c-nonce><s-nonce>,s=<salt>,i=4096
    C: client-final-message   c=<gs2 header + cbind-data>,r=<nonce>,p=<proof>
    S: server-final-message   v=<server signature>

The front end: ``receive_client_first`` (gives the user name to look up),
``server_first(salt, iterations)``, ``receive_client_final(stored_key,
server_key)`` (gives ``v=...`` or raises).  An account that does not exist,
is disabled or has no SCRAM keys gets a salt and keys that match no password,
so the exchange looks the same and fails at the proof (the caller's
business: ``auth.scram``).

Grammar (RFC 5802 §7), the parts we read::

    gs2-cbind-flag  = ("p=" cb-name) / "n" / "y"
    gs2-header      = gs2-cbind-flag "," [ authzid ] ","
    authzid         = "a=" saslname
    cb-name         = 1*(ALPHA / DIGIT / "." / "-")
    saslname        = 1*(value-safe-char / "=2C" / "=3D")
    client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    client-first-message      = gs2-header client-first-message-bare
    client-final-message-without-proof = channel-binding "," nonce ["," extensions]
    client-final-message      = client-final-message-without-proof "," proof
    channel-binding = "c=" base64     ; gs2-header [cbind-data]
    nonce           = "r=" c-nonce [s-nonce]
    printable       = %x21-2B / %x2D-7E  ; no ","
    proof           = "p=" base64
    reserved-mext   = "m=" 1*(value-char)

Keys (RFC 5802 §3), with H = SHA-256 and HMAC = HMAC-SHA-256 (RFC 7677)::

    SaltedPassword  := Hi(Normalize(password), salt, i)      ; PBKDF2
    ClientKey       := HMAC(SaltedPassword, "Client Key")
    StoredKey       := H(ClientKey)
    ServerKey       := HMAC(SaltedPassword, "Server Key")
    AuthMessage     := client-first-message-bare "," server-first-message ","
                       client-final-message-without-proof
    ClientSignature := HMAC(StoredKey, AuthMessage)
    ClientProof     := ClientKey XOR ClientSignature
    ServerSignature := HMAC(ServerKey, AuthMessage)

Channel binding (RFC 5802 §6): under the -PLUS mechanism the client must
send ``p=<type>`` and ``c=`` must carry the binding data of this TLS
connection (``channel_binding(type)``, None for a type we cannot produce).
Under plain SCRAM-SHA-256 a client that says ``y`` (it could bind, it thinks
we cannot) fails when we offered -PLUS: a downgrade.

Errors: ``ScramSyntaxError`` (a ``ProtocolSyntaxError``: SMTP 501, IMAP BAD)
when a message does not parse; ``ScramFailed`` (an ``AuthenticationFailed``:
SMTP 535, IMAP NO [AUTHENTICATIONFAILED]) with ``value`` the RFC 5802 §7
``server-error-value`` otherwise.  We do not send ``e=`` on the wire: the
protocols' own failure replies end the exchange (RFC 4422 §3.6), the value
goes to the log.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from mailserver.errors import AuthenticationFailed, ProtocolSyntaxError, SmtpReply
from mailserver.protocol.sasl.saslprep import SaslprepError, saslprep

#: The mechanism names (RFC 7677 §3, RFC 5802 §4).
SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
#: Octets of a key, a proof and a signature (SHA-256).
KEY_SIZE = 32
#: RFC 7677 §4: "the iteration count ... SHOULD be at least 4096".
MIN_ITERATIONS = 4096
#: Channel binding types we know of (RFC 5929 §4, §3; RFC 9266 §2).
TLS_SERVER_END_POINT = "tls-server-end-point"
TLS_UNIQUE = "tls-unique"
TLS_EXPORTER = "tls-exporter"

_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+\Z")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
_SASLNAME_ESCAPE = re.compile(r"=(?!2C|3D)")
_ATTRIBUTE = re.compile(r"[A-Za-z]=")


class ScramSyntaxError(ProtocolSyntaxError):
    """A SCRAM message that does not parse (RFC 5802 §7 ``invalid-encoding``,
    or the reserved ``m=`` extension: ``extensions-not-supported``)."""

    smtp = SmtpReply(501, "5.5.2", "Malformed SCRAM message")


class ScramFailed(AuthenticationFailed):
    """SCRAM authentication failed; ``value`` is the RFC 5802 §7
    ``server-error-value`` (``invalid-proof``, ``channel-bindings-dont-match``,
    ...), for the log."""

    def __init__(self, value: str) -> None:
        super().__init__(f"SCRAM authentication failed ({value})")
        self.value = value


# -- keys ---------------------------------------------------------------------------


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """``Hi(Normalize(password), salt, i)`` (RFC 5802 §2.2): PBKDF2-HMAC-SHA-256
    of the SASLprep-ed password (a query string, §5.1).  Raises SaslprepError
    for a password SASLprep refuses."""
    prepared = saslprep(password).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", prepared, salt, iterations)


def keys_from_salted(salted: bytes) -> tuple[bytes, bytes]:
    """``(StoredKey, ServerKey)`` of a SaltedPassword (RFC 5802 §3)."""
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256")


def derive_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """``(StoredKey, ServerKey)`` of ``password`` (32 octets each), what the
    server keeps instead of the password (RFC 5802 §3, §9).  Raises SaslprepError."""
    return keys_from_salted(salted_password(password, salt, iterations))


# -- messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientFirst:
    """A parsed client-first-message.

    ``cb_flag``: "n" (no binding), "y" (could, thinks we cannot) or "p";
    ``cb_name``: the binding type after "p=" (else None); ``authzid``: the
    decoded ``a=`` (None when absent); ``username``: decoded and SASLprep-ed;
    ``nonce``: the client's; ``gs2_header`` and ``bare`` as received (they
    enter the channel binding check and the AuthMessage).
    """

    cb_flag: str
    cb_name: str | None
    authzid: str | None
    username: str
    nonce: str
    gs2_header: str
    bare: str


@dataclass(frozen=True, slots=True)
class ClientFinal:
    """A parsed client-final-message: ``channel_binding`` (the decoded ``c=``),
    ``nonce`` (``r=``), ``proof`` (the decoded ``p=``) and
    ``without_proof``, the client-final-message-without-proof as received."""

    channel_binding: bytes
    nonce: str
    proof: bytes
    without_proof: str


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramSyntaxError("SCRAM message is not UTF-8") from None
    if "\0" in text:
        raise ScramSyntaxError("NUL in a SCRAM message")
    return text


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ScramSyntaxError(f"invalid base64 in {what}") from None


def decode_saslname(value: str) -> str:
    """A ``saslname`` with ``=2C`` and ``=3D`` turned back into "," and "="
    (RFC 5802 §5.1).  Raises ScramSyntaxError for any other "=" or an empty name."""
    if not value or _SASLNAME_ESCAPE.search(value):
        raise ScramSyntaxError("invalid saslname")
    return value.replace("=2C", ",").replace("=3D", "=")


def encode_saslname(name: str) -> str:
    """The ``saslname`` of ``name``: "=" as ``=3D``, "," as ``=2C`` (RFC 5802 §5.1)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _attribute(part: str, name: str) -> str:
    if not part.startswith(name + "="):
        raise ScramSyntaxError(f"expected the {name}= attribute")
    return part[len(name) + 1:]


def parse_client_first(data: bytes) -> ClientFirst:
    """``data`` as a client-first-message (grammar in the module docstring).

    The user name is decoded and SASLprep-ed (a query string, RFC 5802 §5.1);
    so is the authzid.  Raises ScramSyntaxError (``m=`` included: RFC 5802
    §5.1 makes its presence a failure).
    """
    text = _text(data)
    flag, sep, rest = text.partition(",")
    authz, sep2, bare = rest.partition(",")
    if not (sep and sep2):
        raise ScramSyntaxError("no GS2 header")
    cb_name = None
    if flag.startswith("p="):
        cb_name = flag[2:]
        if not _CB_NAME.match(cb_name):
            raise ScramSyntaxError("invalid channel binding name")
        flag = "p"
    elif flag not in ("n", "y"):
        raise ScramSyntaxError("invalid GS2 channel binding flag")
    authzid = None
    if authz:
        authzid = _prepare(decode_saslname(_attribute(authz, "a")))
    parts = bare.split(",")
    if parts[0].startswith("m="):
        raise ScramSyntaxError("SCRAM extension not supported (m=)")
    if len(parts) < 2:
        raise ScramSyntaxError("client-first-message needs n= and r=")
    username = _prepare(decode_saslname(_attribute(parts[0], "n")))
    nonce = _attribute(parts[1], "r")
    if not _PRINTABLE.match(nonce):
        raise ScramSyntaxError("invalid nonce")
    _extensions(parts[2:])
    header = text[: len(text) - len(bare)]
    return ClientFirst(flag, cb_name, authzid, username, nonce, header, bare)


def _prepare(name: str) -> str:
    try:
        prepared = saslprep(name)
    except SaslprepError as exc:
        raise ScramSyntaxError(f"user name: {exc}") from None
    if not prepared:
        raise ScramSyntaxError("empty user name")
    return prepared


def _extensions(parts: list[str]) -> None:
    # extensions = attr-val *("," attr-val); unknown ones are ignored (RFC 5802 §5.1).
    for part in parts:
        if not _ATTRIBUTE.match(part):
            raise ScramSyntaxError("invalid SCRAM attribute")


def parse_client_final(data: bytes) -> ClientFinal:
    """``data`` as a client-final-message.  Raises ScramSyntaxError."""
    text = _text(data)
    without_proof, sep, proof_part = text.rpartition(",")
    if not sep:
        raise ScramSyntaxError("client-final-message needs c=, r= and p=")
    proof = _b64(_attribute(proof_part, "p"), "the proof")
    parts = without_proof.split(",")
    if len(parts) < 2:
        raise ScramSyntaxError("client-final-message needs c=, r= and p=")
    binding = _b64(_attribute(parts[0], "c"), "the channel binding")
    nonce = _attribute(parts[1], "r")
    _extensions(parts[2:])
    return ClientFinal(binding, nonce, proof, without_proof)


# -- the exchange -------------------------------------------------------------------


class Step(enum.Enum):
    """Where an exchange is (RFC 5802 §5)."""

    CLIENT_FIRST = "expecting client-first-message"
    SERVER_FIRST = "ready to send server-first-message"
    CLIENT_FINAL = "expecting client-final-message"
    DONE = "done"


class ScramServer:
    """One SCRAM-SHA-256(-PLUS) exchange, server side (see the module docstring).

    ``plus``: the client chose the -PLUS mechanism; ``plus_offered``: we
    advertised -PLUS on this connection (a "y" client is then refused);
    ``channel_binding``: the binding data of this connection for a type
    name, None when we cannot produce that type; ``nonce``: our nonce part
    (default 24 random octets, base64: printable, no ","; tests give theirs).
    Methods must be called in order; out of order raises RuntimeError (our bug).
    """

    def __init__(self, *, plus: bool, plus_offered: bool,
                 channel_binding: Callable[[str], bytes | None],
                 nonce: str | None = None) -> None:
        self.plus = plus
        self.plus_offered = plus_offered
        self._channel_binding = channel_binding
        self._server_nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        self.step = Step.CLIENT_FIRST
        self.first: ClientFirst | None = None
        self._cbind_data = b""
        self._server_first = ""

    def _advance(self, expected: Step, to: Step) -> None:
        if self.step is not expected:
            raise RuntimeError(f"SCRAM exchange is {self.step.value}, not {expected.value}")
        self.step = to

    def receive_client_first(self, data: bytes) -> ClientFirst:
        """Parse and check the client-first-message; its ``username`` is the
        account to look up.  Raises ScramSyntaxError; ScramFailed for a
        channel binding the mechanism or the connection does not allow
        (RFC 5802 §6) and for an authzid other than the user (we do not
        let one user act for another, as for PLAIN)."""
        self._advance(Step.CLIENT_FIRST, Step.SERVER_FIRST)
        first = parse_client_first(data)
        self.first = first
        if self.plus:
            if first.cb_flag != "p":
                raise ScramFailed("other-error")  # -PLUS without binding: RFC 5802 §6
        elif first.cb_flag == "p":
            raise ScramFailed("channel-binding-not-supported")
        elif first.cb_flag == "y" and self.plus_offered:
            raise ScramFailed("server-does-support-channel-binding")
        if first.cb_name is not None:
            data_ = self._channel_binding(first.cb_name)
            if data_ is None:
                raise ScramFailed("unsupported-channel-binding-type")
            self._cbind_data = data_
        if first.authzid is not None and first.authzid.lower() != first.username.lower():
            raise ScramFailed("other-error")
        return first

    def server_first(self, salt: bytes, iterations: int) -> bytes:
        """The server-first-message for this salt and iteration count."""
        self._advance(Step.SERVER_FIRST, Step.CLIENT_FINAL)
        assert self.first is not None
        self._server_first = (f"r={self.first.nonce}{self._server_nonce},"
                              f"s={base64.b64encode(salt).decode()},i={iterations}")
        return self._server_first.encode()

    def receive_client_final(self, data: bytes, stored_key: bytes, server_key: bytes) -> bytes:
        """Check the client-final-message against the account's keys; the
        server-final-message (``v=`` ServerSignature) when the proof holds.

        Raises ScramSyntaxError; ScramFailed: ``channel-bindings-dont-match``,
        ``other-error`` (a nonce that is not ours), ``invalid-proof``.
        """
        self._advance(Step.CLIENT_FINAL, Step.DONE)
        first = self.first
        assert first is not None
        final = parse_client_final(data)
        expected = first.gs2_header.encode() + self._cbind_data
        if not hmac.compare_digest(final.channel_binding, expected):
            raise ScramFailed("channel-bindings-dont-match")
        if final.nonce != first.nonce + self._server_nonce:
            raise ScramFailed("other-error")
        if len(final.proof) != KEY_SIZE:
            raise ScramFailed("invalid-proof")
        auth_message = ",".join((first.bare, self._server_first, final.without_proof)).encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        client_key = bytes(a ^ b for a, b in zip(final.proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            raise ScramFailed("invalid-proof")
        verifier = hmac.digest(server_key, auth_message, "sha256")
        return b"v=" + base64.b64encode(verifier)

"""Line endings of stored messages: every LF is stored as CRLF (pure code).

Design notes
------------
RFC 5322 §2.1 and §2.3: a message's lines end in CRLF, and CR and LF do not
occur on their own.  IMAP serves messages as RFC 5322 text (RFC 3501 §2.3.4
RFC822.SIZE "in RFC 2822 format", RFC 9051 §2.3.4), and clients compute
offsets of partial fetches (``BODY[]<o.n>``) and line counts from that form.
Much mail in the wild arrives with bare LF line ends (Unix tools, local
injectors, IMAP clients appending files as read from disk).  Dovecot and
Cyrus serve such mail with CRLF (Dovecot converts on output, Cyrus on
intake); so do we, by converting once, at intake (IMAP APPEND, SMTP DATA,
DSNs the queue makes), so that the stored octets, RFC822.SIZE, BODYSTRUCTURE
sizes and line counts and every partial fetch agree with each other.

A bare CR (one not followed by LF) is kept as it is.  Reasons:

* It is not a line end by any count we or IMAP clients make: RFC 5322
  recognises CRLF only, our MIME parser and RFC822.SIZE count LF-terminated
  lines, and Dovecot's CRLF conversion (``istream-crlf``) also inserts a CR
  only before a bare LF and passes a lone CR through; so keeping it is what
  the reference server serves.
* Turning it into CRLF would invent line breaks (and so change body line
  counts and quoted-printable soft breaks) in content that a sender may mean
  as data; dropping it would lose octets; refusing the message (Cyrus'
  ``Message contains bare newlines``) would refuse mail Dovecot and SMTP
  relays accept.  SMTP's end-of-data detection is unaffected: the DATA
  decoder ends the content at CRLF "." CRLF only (``smtp.data``).

Messages stored before this conversion existed keep their octets and are
served as stored (sizes then count bare LFs as one octet); nothing rewrites
them.
"""

from __future__ import annotations

_CRLF = b"\r\n"
_LF = b"\n"


def is_crlf_clean(data: bytes) -> bool:
    """True when every LF in ``data`` is preceded by a CR (bare CRs allowed).

    Two ``count`` passes (memchr speed); no copy.
    """
    return data.count(_LF) == data.count(_CRLF)


def to_crlf(data: bytes) -> bytes:
    """``data`` with every bare LF turned into CRLF (RFC 5322 §2.3).

    Input that has none is returned as is (the same object, no copy).  A
    bare CR is kept (see the module notes); ``b"\\r\\r\\n"`` stays as it is
    (a CR, then a CRLF).  Idempotent: ``to_crlf(to_crlf(x)) == to_crlf(x)``.
    """
    if is_crlf_clean(data):
        return data
    # Every CRLF becomes LF, then every LF becomes CRLF: CRs that were part
    # of a CRLF come back, bare CRs are untouched, bare LFs gain their CR.
    return data.replace(_CRLF, _LF).replace(_LF, _CRLF)

"""The SMTP protocol core: pure code, stdlib only, no asyncio (RFC 5321 and extensions).

Fed strings and bytes, returns values and events; the connection code in
``mailserver.smtp`` does the I/O (over aiosmtpd's transport, ``smtp/compat.py``).

* ``command``: a command line -> verb and argument (RFC 5321 §4.1.1, §4.5.3.1.4);
  MAIL/RCPT arguments -> path and ESMTP parameters (RFC 5321 §4.1.2, RFC 1869).
* ``replies``: reply texts and RFC 3463 enhanced status codes, multi-line form.
* ``data``: DATA dot-unstuffing, size and line limits (RFC 5321 §4.1.1.4, §4.5.2).
* ``trace``: the ``Received:`` field and submission fix-ups (RFC 5321 §4.4).
* ``sender``: the ``From:`` mailboxes of a submitted message (RFC 6409 §6.1).
"""

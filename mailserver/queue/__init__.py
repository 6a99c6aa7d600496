"""The outbound queue: messages for remote recipients, delivered over SMTP.

Design notes (after mox's queue and maddy's delivery seams):

* A queued message is one LMDB record (``model.QueuedMessage``) holding the
  envelope and one state per recipient; its content is the store's shared,
  reference-counted blob.  A schedule index maps next-attempt time -> queue id.
* Invariant: the next attempt time is saved *before* each attempt.  If the
  process dies mid-delivery, the message is due again at that time and is
  retried: delivery is at-least-once, never at-most-once.
* Backoff is a pure function (``backoff.py``); the DNS resolver is an
  interface (``mailserver.dns``) so tests serve their own records.
* ``client.py`` is the only importer of aiosmtplib; ``pipeline.py`` reads the
  replies of a pipelined envelope (RFC 2920) on the same transport;
  ``pool.py`` keeps finished sessions briefly for the next message to the same
  destination; ``dsn.py`` builds RFC 3464 reports with the stdlib only.
"""

"""The outbound queue: messages for remote recipients, delivered over SMTP.

Design notes (after mox's queue and maddy's delivery seams):

* A queued message is one LMDB record (``model.QueuedMessage``) holding the
  envelope and one state per recipient; its content is the store's shared,
  reference-counted blob.  A schedule index maps next-attempt time -> queue id.
* Invariant: the next attempt time is saved *before* each attempt.  If the
  process dies mid-delivery, the message is due again at that time and is
  retried: delivery is at-least-once, never at-most-once.
* Backoff is a pure function (``backoff.py``), and so is the decision of
  what becomes of each recipient after an attempt (``outcome.py``); the DNS
  resolver is an interface (``mailserver.dns``) so tests serve their own records.
* ``ids.py`` makes the one id a message has (the SMTP 250 reply, Received:,
  the queue record, the CLI, DSNs, logs).
* ``manager.py`` is the scheduler and the admin actions; ``rounds.py`` runs
  one delivery round of a message; ``client.py`` makes one attempt for one
  domain: ``routing.py`` picks the hosts, ``connect.py`` opens the session,
  ``transaction.py`` runs MAIL/RCPT/DATA and ``pipeline.py`` reads the replies
  of a pipelined envelope (RFC 2920).  These four are the only importers of
  aiosmtplib.  ``pool.py`` keeps finished sessions briefly for the next
  message to the same destination; ``dsn.py`` builds RFC 3464 reports with the
  stdlib only.
"""

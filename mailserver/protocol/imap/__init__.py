"""Sans-IO IMAP4rev1 protocol core (RFC 3501, with RFC 9051, RFC 7888 and
friends where noted): no sockets, no asyncio, stdlib only.

* ``receiver.Receiver`` — bytes in, ``types.Command`` / ``NeedContinuation`` /
  ``Line`` events out; framing of literals and bounded buffers.
* ``parser`` (with ``tokens``, ``flags``, ``seqset``, ``fetch``, ``search``) —
  the RFC 3501 §9 grammar, one parse function per command.
* ``response`` — encoders for what the server writes.
* ``utf7`` — modified UTF-7 mailbox names (RFC 3501 §5.1.3).
"""

from mailserver.protocol.imap.receiver import Receiver
from mailserver.protocol.imap.types import NEED_DATA, Command, Line, NeedContinuation

__all__ = ["NEED_DATA", "Command", "Line", "NeedContinuation", "Receiver"]

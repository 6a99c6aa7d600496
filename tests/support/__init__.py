"""What tests share: the real server in a thread (``server``), raw SMTP/IMAP
clients (``wire``), protocol drivers (``imap_receiver``), store shortcuts
(``imap_data``, ``stores``), and test doubles at the edges we do not own (a DNS
server, a receiving SMTP server).  Test modules import helpers from here (the
fixtures are in tests/conftest.py), never from each other or from conftest."""

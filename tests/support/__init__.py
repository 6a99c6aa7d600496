"""What tests share: raw SMTP/IMAP clients (``wire``), protocol drivers
(``imap_receiver``), and test doubles at the edges we do not own (a DNS server,
a receiving SMTP server).  Test modules import helpers from here, never from
each other."""

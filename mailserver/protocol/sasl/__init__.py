"""SASL mechanisms (RFC 4422) as sans-IO cores: SASLprep (RFC 4013) and
SCRAM-SHA-256 / -PLUS (RFC 5802, RFC 7677).  No sockets, no store: the SMTP
and IMAP front ends feed them the client's messages and send what they return."""

"""Test doubles at the edges we do not own: a DNS server and a receiving SMTP server."""

"""DNS lookups for outbound mail: an interface (``Resolver``) and its dnspython implementation.

The queue depends only on the interface, so tests can point the real
implementation at a loopback DNS server of their own.
"""

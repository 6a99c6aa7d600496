"""DKIM (RFC 6376): key generation, key files, signing outbound mail, verifying incoming.

``keys.py`` makes and stores key pairs with ``cryptography``; ``sign.py`` and
``verify.py`` (DKIM and ARC verification, RFC 8617) are the only importers of
dkimpy.  Signing is CPU work (RSA): callers on the event loop use
``sign_async``, which runs it in a worker thread; verification runs on the
checks' thread pool (``checks.authentication``).
"""

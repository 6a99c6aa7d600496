"""DKIM (RFC 6376) signing of outbound mail: key generation, key files, signing.

``keys.py`` makes and stores key pairs with ``cryptography``; ``sign.py`` is
the only importer of dkimpy.  Signing is CPU work (RSA): callers on the event
loop use ``sign_async``, which runs it in a worker thread.
"""

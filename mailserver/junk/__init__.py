"""Junk filtering that learns from its users (issue #16).

``features``: what a message is made of (words, URL domains, header shape,
the sender-authentication verdicts); ``model``: a token naive Bayes over
those features with Robinson's rare-word damping and Fisher's combination
of the most telling ones (the SpamBayes/mox family).  Both sans-IO: the
counts come from a ``Counts`` the caller provides (the store, per account
and global, ``store/junk_store.py``; or a dict in the benchmark).
"""

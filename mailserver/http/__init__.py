"""The HTTP front end: the ``http`` listener kind (``server.py``), ``/metrics``
(``metrics.py``), errors as RFC 9457 problem details (``problem.py``).

aiohttp's server runs on the daemon's own event loop (no second process, no
thread): ``listeners.base`` binds or takes the supervisor's socket like for
every other kind, and aiohttp's low-level ``web.Server`` is the protocol
factory.  Nothing here imports a protocol front end; ``metrics`` reads the
store and the process-wide instruments (``mailserver.metrics``).
"""

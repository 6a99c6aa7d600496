"""Listeners: one base (``base.py``: accept, connection limits, TLS, graceful
stop) and a registry of kinds (``kinds.py``: protocol name -> start function).

A new kind (like ``http.server``) is a module with a ``ListenerBase`` subclass and one
line in ``kinds.KINDS``.  Nothing is imported here, so a kind module may
import ``listeners.base`` without a cycle through the registry.
"""

"""Kept for ``cli.py`` (``from mailserver.daemon import serve``): the daemon
lives in ``mailserver/process/``; point the CLI at ``process.main.serve``
and delete this module."""

from mailserver.process.main import serve

__all__ = ["serve"]

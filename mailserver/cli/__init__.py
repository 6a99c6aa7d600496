"""The ``mailserver`` command line (``main.py``); ``mailserver.cli:main`` is
the console script's entry point."""

from mailserver.cli.main import main

__all__ = ["main"]

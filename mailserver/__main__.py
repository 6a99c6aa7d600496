"""``python -m mailserver``: the same as the ``mailserver`` console script."""

import sys

from mailserver.cli import main

if __name__ == "__main__":
    sys.exit(main())

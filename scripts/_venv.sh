# Sourced by scripts/run and scripts/test: make .venv if missing and install the package.
# Usage: source scripts/_venv.sh EXTRA   (EXTRA: the optional-dependencies group, e.g. "test")
# Needs Python >= 3.11 with venv (Debian: apt install python3 python3-venv).
# Reinstalls only when pyproject.toml changes (the stamp file names its hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "mailserver: error: needs Python >= 3.11 (tried '$PYTHON'; set PYTHON=...)" >&2
    exit 1
  fi
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    echo "mailserver: error: '$PYTHON -m venv' failed; on Debian: apt install python3-venv" >&2
    exit 1
  fi
fi
STAMP=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-$1
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$1]"
  rm -f .venv/.installed-*
  touch "$STAMP"
fi

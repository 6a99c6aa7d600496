# Sourced by scripts/run, scripts/test and scripts/bench: make the venv if
# missing and install the package into it.
# Usage: source scripts/_venv.sh EXTRA
#   EXTRA: an optional-dependencies group ("test"), or "base" for the daemon alone
#   (always pass it: a sourced script without arguments sees the caller's).
# Environment:
#   PYTHON  the interpreter that makes the venv (default python3.11, else python3);
#           needs Python >= 3.11 with venv (Debian 12: apt install python3 python3-venv)
#   VENV    the venv directory (default .venv); sets $VENV for the caller
# Installs only when pyproject.toml changed or the extra is missing: the stamp
# files name pyproject's hash and what was installed ("base" or an extra, which
# includes the base), so test -> run needs nothing and run -> test adds the extra.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "mailserver: error: needs Python >= 3.11 (tried '$PYTHON'; set PYTHON=...)" >&2
    exit 1
  fi
  if ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    echo "mailserver: error: '$PYTHON -m venv $VENV' failed; on Debian: apt install python3-venv" >&2
    exit 1
  fi
elif want_version="$("$PYTHON" -c 'import sys; print(sys.version)' 2>/dev/null)" &&
     [ "$("$VENV/bin/python" -c 'import sys; print(sys.version)')" != "$want_version" ]; then
  # An existing venv made by another interpreter would run the suite on the
  # wrong Python without a word: say so instead.
  echo "mailserver: error: $VENV was made by another Python than '$PYTHON';" \
       "remove it or set VENV=... to a directory of its own" >&2
  exit 1
fi
HASH=$(sha256sum pyproject.toml | cut -c1-16)
WANT="${1:-base}"
installed() {  # whether $1 ("base" or an extra) is in the venv for this pyproject
  if [ "$1" = base ]; then
    compgen -G "$VENV/.installed-$HASH-*" >/dev/null
  else
    [ -f "$VENV/.installed-$HASH-$1" ]
  fi
}
if ! installed "$WANT"; then
  PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check --no-input)
  if [ "$WANT" = base ]; then SPEC="."; else SPEC=".[$WANT]"; fi
  # pip's own notices and the build backend's output go to the log; shown
  # only when the install fails.
  LOG="$VENV/.install.log"
  if ! { "${PIP[@]}" install --upgrade pip && "${PIP[@]}" install -e "$SPEC"; } >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "mailserver: error: installing into $VENV failed (log: $LOG)" >&2
    exit 1
  fi
  # Another pyproject's stamps are stale; this one's other stamps stay true.
  find "$VENV" -maxdepth 1 -name '.installed-*' ! -name ".installed-$HASH-*" -delete
  touch "$VENV/.installed-$HASH-$WANT"
fi

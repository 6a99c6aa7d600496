"""Settings: TOML (stdlib ``tomllib``) → frozen, validated dataclasses.

* ``schema``: the dataclasses every package reads, the values they allow, and
  their defaults.  Durations are seconds, sizes octets.
* ``loading``: the loader (``load``/``parse``) that follows them, the built-in
  development set-up (``builtin``) and ``with_data_dir``.  Unknown keys and bad
  values raise ``ConfigError`` naming the file, the key and the problem.

Every public name of both is re-exported here: import from ``mailserver.config``.
"""

from __future__ import annotations

from mailserver.config.checks import ChecksSettings
from mailserver.config.loading import DEV_LISTENERS, builtin, load, parse, with_data_dir
from mailserver.config.schema import (
    DKIM_ALGORITHMS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_WORKERS,
    PROTOCOLS,
    TLS_MODES,
    AnalyticsSettings,
    AuthSettings,
    BlobSettings,
    Config,
    DkimSettings,
    JunkSettings,
    Limits,
    Listener,
    LogSettings,
    StoreSettings,
    TlsSettings,
    worker_count,
)
from mailserver.errors import ConfigError

__all__ = [
    "AnalyticsSettings",
    "BlobSettings",
    "JunkSettings",
    "AuthSettings",
    "DEV_LISTENERS",
    "DKIM_ALGORITHMS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_WORKERS",
    "PROTOCOLS",
    "TLS_MODES",
    "ChecksSettings",
    "Config",
    "ConfigError",
    "DkimSettings",
    "Limits",
    "Listener",
    "LogSettings",
    "StoreSettings",
    "TlsSettings",
    "builtin",
    "load",
    "parse",
    "with_data_dir",
    "worker_count",
]

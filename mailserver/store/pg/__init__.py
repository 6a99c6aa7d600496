"""The PostgreSQL store (issue #17): its schema and migrations so far.

``migrations`` holds the versioned, forward-only schema changes and the
runner behind ``mailserver db migrate``; the store API over this schema is
not written yet, so the daemon still runs on LMDB only.
"""

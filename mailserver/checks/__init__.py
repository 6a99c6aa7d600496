"""SMTP checks as stages: connect, HELO, MAIL, RCPT, DATA (see ``stage.py``).

``stage`` has the seam (``Verdict``, ``CheckContext``, ``Pipeline``); ``rules``
the rules we ship; ``authentication`` the sender-authentication stage of the
MX listeners (SPF in ``spf_eval``, DMARC in ``dmarc``, DKIM/ARC in
``mailserver.dkim.verify``; verdicts for aggregate reports in ``dmarc_log``
and ``dmarc_report``).  Stages get a read-only context and return verdicts; the
connection code runs the pipeline and never knows individual rules; the list
of stages is built from the configuration in ``app.build_stages``.  New checks
(SPF, DKIM, DMARC, rate limits, junk scoring) are new stages.
"""

from mailserver.checks.stage import (
    ACCEPT,
    CheckContext,
    Outcome,
    Pipeline,
    RecipientFacts,
    Verdict,
    quarantine,
    refuse,
)

__all__ = [
    "ACCEPT", "CheckContext", "Outcome", "Pipeline", "RecipientFacts", "Verdict", "quarantine",
    "refuse",
]

"""The admin service every front end calls (``service.py``), the rules it
applies (``policy.py``) and the records it returns (``views.py``)."""

from mailserver.admin.backup import BackupReport, RestoreReport, VerifyReport, restore, verify
from mailserver.admin.mailio import Progress, TransferReport
from mailserver.admin.service import AdminService, QueueControl, initialise, open_admin
from mailserver.admin.views import (
    AccountInfo,
    AliasInfo,
    DkimKeyInfo,
    DnsRecord,
    DomainInfo,
    QueueEntry,
    QueueRecipient,
    TokenInfo,
)

__all__ = [
    "AccountInfo",
    "AdminService",
    "AliasInfo",
    "BackupReport",
    "DkimKeyInfo",
    "DnsRecord",
    "DomainInfo",
    "QueueEntry",
    "Progress",
    "QueueControl",
    "QueueRecipient",
    "RestoreReport",
    "TransferReport",
    "VerifyReport",
    "TokenInfo",
    "initialise",
    "open_admin",
    "restore",
    "verify",
]

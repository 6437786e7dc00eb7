"""All SQL the service runs, as named constants, behind two repository classes.

``files`` is the request path (presign records, saved files, one user at a
time); ``maintenance`` is what operators run (sweep, reconcile) as the
tables' owner; ``tables`` is what both share.
"""

from .files import (
    AbandonedUpload,
    FileDeleted,
    FileRepository,
    KeyState,
    NewFile,
    PendingUpload,
    QuotaExceeded,
    StoredFile,
    Usage,
)
from .maintenance import ListedRow, MaintenanceRepository
from .tables import FILE_TABLES, QueryCursor, Transaction

__all__ = [
    "FILE_TABLES",
    "AbandonedUpload",
    "FileDeleted",
    "FileRepository",
    "KeyState",
    "ListedRow",
    "MaintenanceRepository",
    "NewFile",
    "PendingUpload",
    "QueryCursor",
    "QuotaExceeded",
    "StoredFile",
    "Transaction",
    "Usage",
]

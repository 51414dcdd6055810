"""Persistence: SQLAlchemy 2 models, repositories and Alembic migrations (SQLite or PostgreSQL).

The PBX and the CLI use `Store` and the frozen records of `callplane.store.records`; no ORM object
leaves this package.
"""

from callplane.store.db import Store
from callplane.store.errors import (
    AlreadyExists,
    ConfigFileError,
    InvalidValue,
    NotFound,
    StoreError,
)

__all__ = ["AlreadyExists", "ConfigFileError", "InvalidValue", "NotFound", "Store", "StoreError"]

"""The product database (TimescaleDB): connections, versioned migrations, roles, registry, retention."""

from store.db import connect
from store.migrate import Migration, MigrationError, MigrationState, discover, migrate, migration_status

__all__ = [
    "Migration",
    "MigrationError",
    "MigrationState",
    "connect",
    "discover",
    "migrate",
    "migration_status",
]

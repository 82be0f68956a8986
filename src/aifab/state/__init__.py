"""State store: SQLite under the data directory by default, PostgreSQL when ``database_url`` says so."""

from aifab.state.db import Database
from aifab.state.tables import Base

__all__ = ["Base", "Database"]

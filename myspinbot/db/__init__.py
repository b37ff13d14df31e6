"""The durable SQL job history (SQLite or PostgreSQL) behind `JobHistory`."""

from myspinbot.db.history import JobHistory, ProfileRecord

__all__ = ["JobHistory", "ProfileRecord"]

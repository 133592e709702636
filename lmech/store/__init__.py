"""Store: runs, long-format metrics and verdicts in an embedded SQLite database."""
from .sqlite import Store

__all__ = ["Store"]

"""Store: runs, long-format metrics and verdicts in an embedded SQLite database, and the keyed view of runs."""
from .result import RunResult
from .runs import Key, Runs
from .sqlite import Store

__all__ = ["Key", "RunResult", "Runs", "Store"]

import copy

import pytest
import torch

from lmech.engine.executor import make_executor
from lmech.laws import LAWS
from lmech.runner import run_experiments

_EXECUTOR = make_executor(None, "auto")  # what `lmech check` uses: one single-threaded worker process per core


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


class _QuickRuns(dict):
    """Quick-scale runs of a law, trained on first use (as ``lmech.check`` trains them) and shared by the session."""

    def __missing__(self, law_id):
        self[law_id] = run_experiments(LAWS[law_id].experiments("quick"), executor=_EXECUTOR)
        return self[law_id]


@pytest.fixture(scope="session")
def quick_runs():
    return _QuickRuns()


def distorted(runs, name_prefix, change):
    """Copies of ``runs`` (a :class:`lmech.laws.Runs`) with every scalar and array measurement whose name starts with
    ``name_prefix`` replaced by ``change(key, value)`` (``key`` the run's :class:`~lmech.laws.Key`, e.g.
    ``key["eta"]``): a wrong measurement that a law must reject."""
    out = copy.deepcopy(runs)
    for key, run in out.items():
        run.records = [(s, n, change(key, v) if n.startswith(name_prefix) else v) for s, n, v in run.records]
        run.arrays = [(s, n, change(key, a) if n.startswith(name_prefix) else a) for s, n, a in run.arrays]
    return out

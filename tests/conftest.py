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


# Quick-scale sweeps of about a hundred runs each (about 40 s apiece on 2 cores), the quanta law's 12 runs of 4000
# Adam steps (about 30 s in one process), grokking's 4700 full-batch AdamW steps (about 35 s) and neural collapse's
# 8000 steps of a width-256 MLP (about 17 s), and issue 16's instability-early-warning (15 runs with a sharpness
# probe, about 15 s), prior-teacher-calibration (256 ensemble runs, about 17 s) and variance-ood-detection (64 runs of
# 200 steps, about 21 s): their law tests run in CI's second stage (`make test-slow`, marked slow), which keeps the
# default suite under 5 minutes. ntk-lazy-limit's ten wide runs (about 30 s) are marked slow
# at their test (tests/test_kernel_laws.py).
_SLOW_LAWS = ("mup-lr-transfer", "transformer-mup-transfer", "depth-mup-transfer", "quanta-multitask-parity",
              "grokking-weight-decay", "neural-collapse", "instability-early-warning", "prior-teacher-calibration",
              "variance-ood-detection")
_SLOW_LAW_FILES = ("test_mup_transfer_law.py", "test_transformer_transfer_law.py", "test_depth_transfer_law.py",
                   "test_grokking_weight_decay_law.py", "test_neural_collapse_law.py", "test_instability_law.py",
                   "test_prior_teacher_law.py", "test_variance_ood_law.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if "quick_runs" not in getattr(item, "fixturenames", ()):
            continue
        if item.path.name in _SLOW_LAW_FILES or any(f"[{law}]" in item.nodeid for law in _SLOW_LAWS):
            item.add_marker(pytest.mark.slow)

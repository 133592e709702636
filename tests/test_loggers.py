"""The logger interface without any tracker library: a Tracker's measurements reach a MetricLogger at their steps,
with lmech/ names, non-finite values skipped, families filtered; stored runs and verdicts replay."""
import math

import torch

import lmech
from lmech.integrations import MetricLogger
from lmech.probes import Sharpness
from lmech.report.verdict import Verdict


class ListLogger(MetricLogger):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.flushed = [], 0

    def write(self, values, step):
        self.rows.append((step, values))

    def flush(self):
        self.flushed += 1


def _loop(loggers, global_steps):
    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=5, probes=[Sharpness()],
                            loggers=loggers)
    for step in global_steps:
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        tracker.step(step)
    return tracker.close()


def test_tracker_sends_each_measurement_at_its_step():
    everything, only_sharpness = ListLogger(), ListLogger(only=("sharpness",))
    run = _loop([everything, only_sharpness], range(1, 13))
    steps = [s for s, _ in everything.rows]
    assert steps == [0, 5, 10, 12]  # three measurements, then the tracker's own totals at close
    step_of, values = everything.rows[1]
    assert step_of == 5 and values["lmech/sharpness/0"] == run.series("sharpness/0")[1][1]
    assert "lmech/tracker/overhead" in everything.rows[-1][1] and everything.flushed == 1
    assert all(k.startswith("lmech/sharpness/") for _, v in only_sharpness.rows for k in v)


def test_global_steps_and_repeats_measure_once():
    logger = ListLogger()
    _loop([logger], [2, 5, 5, 7, 10])  # a framework's global steps, one repeated (e.g. gradient accumulation)
    assert [s for s, _ in logger.rows][:-1] == [0, 5, 10]


def test_replays_skip_non_finite_values():
    logger = ListLogger()
    run = lmech.RunResult("r", None, [], [(0, "loss/train", 1.0), (0, "x/y", math.nan), (3, "loss/train", 0.5)])
    logger.log_run(run)
    assert logger.rows == [(0, {"lmech/loss/train": 1.0}), (3, {"lmech/loss/train": 0.5})] and logger.logged == 2
    verdict = Verdict("some-law", "quick", "pass", "m", 0.01, 0.1, "", [], [], {}, {}, {})
    logger.log_verdict(verdict, step=7)
    assert logger.rows[-1] == (7, {"lmech/verdict/some-law/error": 0.01, "lmech/verdict/some-law/tolerance": 0.1,
                                   "lmech/verdict/some-law/passed": 1.0})

"""lmech.diagnose and `lmech diagnose`: each finding's number against the closed-form transformation of the recorded
series (hand-made runs), a tracked run end to end, the page, and bad input."""
import math

import numpy as np
import pytest
import torch

import lmech
from lmech.cli import main
from lmech.store.result import RunResult
from lmech.systems import MLP, Digits, LearningRule, System, Task


def _run(records, system=None, info=None, outcome="completed"):
    info = info if info is not None else {"optimizer": "SGD", "optimizer_defaults": {"lr": 0.1, "momentum": 0.0}}
    return RunResult("r1", system, [], [(s, n, float(v)) for s, n, v in records], outcome=outcome, info=info)


def _series(name, values, every=10):
    return [(i * every, name, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("sharpness, status, words", [
    ([5.0, 8.0, 10.0], "ok", "below the edge"),        # T = 2/0.1 = 20: S/T at most 0.5
    ([5.0, 19.0, 20.5], "ok", "at the edge of stability from step 10"),
    ([5.0, 19.0, 30.0], "attention", "above the threshold from step 20"),
    ([30.0, 19.0, 20.5], "ok", "above the threshold at step 0, then fell back"),  # a catapult
])
def test_edge_of_stability_reads_sharpness_against_two_over_eta(sharpness, status, words):
    f = lmech.diagnose(_run(_series("loss/train", [1, 0.5, 0.3]) + _series("sharpness/0", sharpness)))
    eos = f.finding("edge of stability")
    peak = max(sharpness) * 0.1 / 2
    assert eos.status == status and words in eos.summary
    assert eos.value == pytest.approx(peak if status == "attention" else sharpness[-1] * 0.1 / 2)
    if peak > 1.15:
        assert f"{0.1 * 0.9 / peak:.3g}" in eos.advice  # the rate that puts the peak at 0.9 T


def test_adam_threshold_and_preconditioned_sharpness():
    info = {"optimizer": "Adam", "optimizer_defaults": {"lr": 1e-3, "betas": [0.9, 0.999]}}
    f = lmech.diagnose(_run(_series("preconditioned_sharpness/0", [1000.0, 38000.0]), info=info))
    assert f.finding("edge of stability").value == pytest.approx(38000 / (38 / 1e-3))
    assert f.finding("training").status == "missing"


def test_lazy_rich_noise_spectra_collapse_and_missing_topics():
    system = System(MLP(width=16), Digits(100, 10), Task("mse"), LearningRule(lr=0.1, steps=10, optimizer="sgd",
                                                                              batch_size=32))
    records = (_series("kernels/distance", [0.0, 0.01]) + _series("noise_scale/b_simple", [200.0, 250.0, 300.0])
               + _series("esd/0/alpha", [9.0, 8.0]) + _series("esd/1/alpha", [5.0, 3.0]) + _series("nc/1", [1.0, 0.05]))
    f = lmech.diagnose(_run(records, system=system))
    assert f.finding("lazy or rich").summary.startswith("lazy") and f.finding("lazy or rich").value == 0.01
    noise = f.finding("batch size")
    assert noise.value == pytest.approx(32 / 250) and noise.status == "attention" and "up to ~250" in noise.advice
    spectra = f.finding("weight spectra")
    assert spectra.status == "attention" and "layer(s) 0" in spectra.meaning and spectra.value == pytest.approx(5.5)
    assert f.finding("neural collapse").value == 0.05 and "collapsing" in f.finding("neural collapse").summary
    for topic, probe in (("instability alarms", "Instability()"), ("coordinate sizes (muP)", "CoordinateSizes()"),
                         ("edge of stability", "Sharpness()")):
        missing = f.finding(topic)
        assert missing.status == "missing" and probe in missing.advice and math.isnan(missing.value)
    rich = lmech.diagnose(_run(_series("representation/0", [0.0, 0.4]) + _series("representation/1", [0.0, 0.1])))
    assert rich.finding("lazy or rich").summary.startswith("rich") and rich.finding("lazy or rich").value == 0.4
    weights = lmech.diagnose(_run(_series("weights/relative", [0.0, 0.1]))).finding("lazy or rich")
    assert weights.summary.startswith("in between") and "weight" in weights.summary


def test_coordinate_spread_flags_a_layer_that_barely_moves():
    records = (_series("coords/0/size", [1.0, 1.0]) + _series("coords/0/update", [0.0, 0.5])
               + _series("coords/2/size", [2.0, 2.0]) + _series("coords/2/update", [0.0, 0.02]))
    c = lmech.diagnose(_run(records)).finding("coordinate sizes (muP)")
    assert c.value == pytest.approx(0.5 / 0.01) and c.status == "attention"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tracked GD run of the README's kind at the edge of stability, stored."""
    from lmech.probes import Instability, Sharpness, WeightSpectrum

    torch.manual_seed(0)
    data = lmech.Digits(n_train=256, n_test=0).load()
    x = torch.as_tensor(data.x_train, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.as_tensor(data.y_train), 10).float()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    out = tmp_path_factory.mktemp("diag")
    tracker = lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=25, store=out / "lmech.db",
                            probes=[Sharpness(), Instability(), WeightSpectrum()])
    for _ in range(150):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        tracker.step()
    return tracker.close(), out


def test_tracked_run_diagnosis_and_page(tracked):
    run, _ = tracked
    d = lmech.diagnose(run)
    steps, s = run.series("sharpness/0")
    assert d.finding("edge of stability").value == pytest.approx(s[-1] * 0.2 / 2)  # not above the band here
    assert d.finding("training").status == "ok"
    page = d.html()
    assert all(f.topic in page for f in d.findings) and "http" not in page.replace("https://", "")
    assert "data:image/png;base64," in page


def test_cli_diagnose_and_its_errors(tracked, capsys, tmp_path):
    run, out = tracked
    assert main(["diagnose", run.run_id, "--out", str(out), "--html", str(tmp_path / "d.html")]) == 0
    text = capsys.readouterr().out
    assert "edge of stability" in text and (tmp_path / "d.html").exists()
    assert main(["diagnose", "nope", "--out", str(out)]) == 2
    assert "lmech runs" in capsys.readouterr().err
    assert main(["diagnose", run.run_id, "--out", str(tmp_path / "empty")]) == 2
    assert "no store" in capsys.readouterr().err
    with pytest.raises(TypeError, match="RunResult"):
        lmech.diagnose({"run": 1})

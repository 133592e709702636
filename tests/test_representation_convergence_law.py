"""representation-convergence: the analytic kernel is the limit of the measured init kernels, and the law failing on a
wrong width exponent."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS


def test_readout_kernel_at_init_converges_on_the_analytic_nngp_at_the_predicted_rate():
    """An independent check of the law's limit: finite-width readout kernels of lmech's own MLP, sampled directly,
    approach the analytic NNGP with the CKA deficit ~ 1/width (two widths, 4x apart: the deficit falls ~4x)."""
    import torch

    from lmech import cka, readout_kernel
    from lmech.laws import representation_convergence as module
    from lmech.laws._kernels import analytic_kernels
    from lmech.systems import build_model

    s = LAWS["representation-convergence"].setting("quick")
    system = module._system(s, 64, 0)
    data = system.data.load()
    x = np.asarray(data.x_train[:200], np.float64)
    limit, _ = analytic_kernels(system, x)
    deficits = []
    for width in (128, 512):
        values = []
        for seed in range(4):
            arch = module._system(s, width, seed).architecture
            model = build_model(arch, data, init="normal", init_scale=1.0, seed=seed, dtype=torch.float64)
            k = readout_kernel(model, torch.as_tensor(x)).detach().numpy()
            values.append(1 - cka(k, limit, kernel="precomputed", debiased=True))
        deficits.append(np.mean(values))
    assert np.log(deficits[0] / deficits[1]) / np.log(4) == pytest.approx(1.0, abs=0.3)


def test_representation_convergence_fails_on_a_width_exponent_of_minus_two(quick_runs, monkeypatch):
    from lmech.laws import representation_convergence as module

    monkeypatch.setattr(module, "_EXPONENT", -2.0)
    verdict = LAWS["representation-convergence"].evaluate(quick_runs["representation-convergence"], "quick")
    assert verdict.status == FAIL and verdict.error > module._SLOPE_TOL

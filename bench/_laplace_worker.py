"""laplace-torch side of bench/bench_laplace.py; run under the separate venv .venv-laplace (bench/requirements-laplace.txt).

Not meant to be run by hand: bench/bench_laplace.py writes ``job.json`` and ``inputs.pt`` (the trained model's
``state_dict``, its widths, the training and test inputs and targets, all float64) into a temporary folder and calls

    .venv-laplace/bin/python bench/_laplace_worker.py JOB.json

The worker rebuilds the same ``nn.Sequential(Linear(d, h), ReLU(), Linear(h, 1))``, times
``Laplace(model, "regression", subset_of_weights="all", hessian_structure="full", sigma_noise=s,
prior_precision=delta)``, ``fit`` on the training set (one full batch) and ``la(x_test, pred_type="glm")`` (the
linearized predictive), and writes the function variances (``variance.npy``) and its timings to ``result.json``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from _benchutil import timed  # bench/ is sys.path[0]


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out_dir"])
    inputs = torch.load(out / "inputs.pt")
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(job["threads"])
    from laplace import Laplace
    import laplace

    d, h = inputs["widths"]
    model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, 1)).double()
    model.load_state_dict(inputs["state_dict"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs["x_train"], inputs["y_train"]),
                                         batch_size=len(inputs["x_train"]))

    def fit_and_predict():
        la = Laplace(model, "regression", subset_of_weights="all", hessian_structure="full",
                     sigma_noise=job["sigma_noise"], prior_precision=job["prior_precision"])
        la.fit(loader, progress_bar=False)
        _, f_var = la(inputs["x_test"], pred_type="glm")
        return f_var

    f_var, t = timed(fit_and_predict, job["repeats"], label="laplace-torch")
    import numpy as np
    np.save(out / "variance.npy", f_var.detach().reshape(-1).numpy())
    (out / "result.json").write_text(json.dumps({"timing": t, "laplace_torch": getattr(laplace, "__version__", "0.3"),
                                                 "torch": torch.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])

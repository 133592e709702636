"""neural-tangents side of the kernel benchmarks; run under the separate venv .venv-nt (bench/requirements-nt.txt).

Not meant to be run by hand: bench/bench_kernels.py and bench/bench_entk.py write a JSON job file and the inputs
(.npy / .npz) into a temporary folder and call

    .venv-nt/bin/python bench/_nt_worker.py JOB.json

The worker writes the kernels it computed as .npy files into the job's ``out_dir`` and its timings, versions and
machine facts to ``out_dir/result.json``.

Job modes:

* ``analytic``: float64 (``jax_enable_x64``); for each case ``{"name", "activation", "depth", "w_std", "b_std"}``
  builds ``stax.serial(Dense(1, W_std, b_std), act, ..., Dense(1, W_std, b_std))`` (``depth`` hidden layers, NTK
  parameterization) and times ``jax.jit(kernel_fn, static_argnames="get")(x, None, ("nngp", "ntk"))``.
* ``ensemble``: float64; the same ``stax.serial`` as ``analytic`` for one case, and times a fresh
  ``nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, learning_rate)`` called at
  ``t = job["t"]`` (``inf`` included) with ``get="ntk", compute_cov=True`` per call (kernels and eigendecomposition
  included, as lmech's ``ntk_predict`` computes them), saving the mean and covariance.
* ``entk``: float32; the bias-free NTK-parameterized ReLU MLP whose weights (torch layout ``(out, in)``) are in the
  job's ``weights`` .npz, as ``stax.serial(Dense(width, W_std=1, b_std=None), Relu(), ..., Dense(1, ...))`` with
  params ``(W.T, None)`` (NT computes ``W_std / sqrt(fan_in) * x @ W``, the same function and the same parameters
  as lmech's ``Dense`` with multiplier ``1/sqrt(fan_in)``), and times ``jax.jit(nt.empirical_ntk_fn(apply_fn,
  trace_axes=(-1,), vmap_axes=0, implementation=impl))(x, None, params)`` for each requested implementation.

For STRUCTURED_DERIVATIVES and AUTO the worker restores two aliases that NT 0.6.5 reads from
``jax.interpreters.ad`` and jax 0.4.30 no longer exports (see ``_shim_jax_for_structured_derivatives``).

First calls (compilation + one evaluation) are timed apart from the repeats; every timed call ends with
``block_until_ready``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
from pathlib import Path

from _benchutil import timed  # bench/ is sys.path[0]; _benchutil needs only the standard library at import

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # neural_tangents imports tensorflow (experimental.empirical_tf)


def _timed(fn, repeats: int, label: str):
    """:func:`_benchutil.timed`, plus ``compile_s_est`` = first call - median steady-state call."""
    out, t = timed(fn, repeats, label=label)
    t["compile_s_est"] = round(max(t["first_call_s"] - t["median_s"], 0.0), 6)
    return out, t


def _activation(stax, name: str):
    if name == "relu":
        return stax.Relu()
    if name == "erf":
        return stax.Erf()  # a * erf(b * x) + c with a=1, b=1, c=0: torch.erf
    if name == "gelu":
        return stax.Gelu(approximate=False)
    if name == "linear":
        return stax.Identity()
    raise ValueError(f"no neural-tangents activation for {name!r}")


def _kernel_fn(stax, case: dict):
    """``kernel_fn`` of ``stax.serial(Dense(1, W_std, b_std), act, ..., Dense(1, W_std, b_std))``, NTK
    parameterization, ``case["depth"]`` hidden layers."""
    layers = []
    for _ in range(case["depth"]):
        layers += [stax.Dense(1, W_std=case["w_std"], b_std=case["b_std"], parameterization="ntk"),
                   _activation(stax, case["activation"])]
    layers.append(stax.Dense(1, W_std=case["w_std"], b_std=case["b_std"], parameterization="ntk"))
    return stax.serial(*layers)[2]


def _facts(jax, nt) -> dict:
    import numpy as np
    import scipy
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": __import__("jaxlib").__version__,
        "neural_tangents": nt.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "loadavg_start": os.getloadavg(),
    }


def run_analytic(job: dict, out_dir: Path) -> dict:
    import jax
    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    x = np.load(job["x"])
    assert x.dtype == np.float64, x.dtype
    result = {"facts": _facts(jax, nt), "cases": {}}
    for case in job["cases"]:
        kfn = jax.jit(_kernel_fn(stax, case), static_argnames="get")

        def call(kfn=kfn):
            k = kfn(x, None, get=("nngp", "ntk"))
            jax.block_until_ready(k)
            return k

        (nngp, ntk), timing = _timed(call, job["repeats"], label=f"nt {case['name']}")
        paths = {}
        for key, arr in (("nngp", nngp), ("ntk", ntk)):
            arr = np.asarray(arr)
            assert arr.dtype == np.float64, arr.dtype
            p = out_dir / f"{case['name']}_{key}.npy"
            np.save(p, arr)
            paths[key] = str(p)
        del nngp, ntk
        result["cases"][case["name"]] = {**case, **timing, "paths": paths, "loadavg_end": os.getloadavg()}
        print(f"[nt] {case['name']}: first {timing['first_call_s']:.3f} s, best {timing['best_s']:.3f} s, "
              f"median {timing['median_s']:.3f} s", file=sys.stderr, flush=True)
    return result


def run_ensemble(job: dict, out_dir: Path) -> dict:
    import jax
    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    x_train, y_train, x_test = (np.load(job[k]) for k in ("x_train", "y_train", "x_test"))
    case = job["case"]
    kernel_fn = _kernel_fn(stax, case)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    t = np.array([float(v) for v in job["t"]])

    def call():
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
                                                           learning_rate=job["learning_rate"])
        out = predict(t=t, x_test=x_test, get="ntk", compute_cov=True)
        jax.block_until_ready(out)
        return out

    (mean, cov), timing = _timed(call, job["repeats"], label="nt ensemble")
    np.save(out_dir / "mean.npy", np.asarray(mean))
    np.save(out_dir / "cov.npy", np.asarray(cov))
    print(f"[nt] ensemble: first {timing['first_call_s']:.3f} s, median {timing['median_s']:.3f} s", file=sys.stderr,
          flush=True)
    return {"facts": _facts(jax, nt), **timing, "mean": str(out_dir / "mean.npy"), "cov": str(out_dir / "cov.npy")}


def _shim_jax_for_structured_derivatives(jax) -> list[str]:
    """Restore two names NT 0.6.5's STRUCTURED_DERIVATIVES (and AUTO) use and jax 0.4.30 no longer exports.

    neural_tangents/_src/empirical.py reads ``jax.interpreters.ad.source_info_util`` and ``ad.config`` (aliases
    that jax deprecated as "inadvertently exported", jax PR #18117, and has since removed): without them these two
    implementations fail with ``AttributeError: module 'jax.interpreters.ad' has no attribute 'source_info_util'``.
    The aliases point at the very objects they used to (``jax._src.source_info_util``, ``jax.config``); nothing
    numerical changes. JACOBIAN_CONTRACTION and NTK_VECTOR_PRODUCTS do not touch them.
    """
    from jax._src import source_info_util
    from jax.interpreters import ad
    done = []
    if not hasattr(ad, "source_info_util"):
        ad.source_info_util = source_info_util
        done.append("jax.interpreters.ad.source_info_util = jax._src.source_info_util")
    if not hasattr(ad, "config"):
        ad.config = jax.config
        done.append("jax.interpreters.ad.config = jax.config")
    return done


def run_entk(job: dict, out_dir: Path) -> dict:
    import jax
    import numpy as np
    shims = _shim_jax_for_structured_derivatives(jax)
    import neural_tangents as nt
    from neural_tangents import stax

    x = np.load(job["x"])
    assert x.dtype == np.float32, x.dtype
    w = np.load(job["weights"])
    weights = [w[f"w{i}"] for i in range(len(w.files))]
    layers, params = [], []
    for i, wi in enumerate(weights):
        out_dim = wi.shape[0]
        layers.append(stax.Dense(out_dim, W_std=1.0, b_std=None, parameterization="ntk"))
        params.append((jax.numpy.asarray(wi.T), None))
        if i < len(weights) - 1:
            layers.append(stax.Relu())
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    n_params = sum(int(np.prod(wi.shape)) for wi in weights)

    result = {"facts": {**_facts(jax, nt), "jax_shims": shims}, "n_params": n_params, "impls": {}}
    out = apply_fn(params, x)
    np.save(out_dir / "f.npy", np.asarray(out))
    for name in job["impls"]:
        impl = getattr(nt.NtkImplementation, name)
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, implementation=impl))

        def call(fn=fn):
            k = fn(x, None, params)
            jax.block_until_ready(k)
            return k

        try:
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured):  # AUTO prints the FLOPs it estimated for each method
                k, timing = _timed(call, job["repeats"], label=f"nt {name}")
            if captured.getvalue().strip():
                timing["nt_printed"] = captured.getvalue().strip().splitlines()
                print(captured.getvalue().strip(), file=sys.stderr)
        except Exception as e:  # noqa: BLE001  (an implementation NT cannot run here: recorded, the others still run)
            result["impls"][name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            print(f"[nt] {name}: FAILED {type(e).__name__}: {str(e)[:300]}", file=sys.stderr, flush=True)
            continue
        k = np.asarray(k)
        assert k.dtype == np.float32 and k.shape == (x.shape[0], x.shape[0]), (k.dtype, k.shape)
        p = out_dir / f"entk_{name}.npy"
        np.save(p, k)
        result["impls"][name] = {**timing, "path": str(p), "loadavg_end": os.getloadavg()}
        print(f"[nt] {name}: first {timing['first_call_s']:.3f} s, best {timing['best_s']:.3f} s, "
              f"median {timing['median_s']:.3f} s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out_dir = Path(job["out_dir"])
    result = {"analytic": run_analytic, "entk": run_entk, "ensemble": run_ensemble}[job["mode"]](job, out_dir)
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Command line: ``lmech list | check | run | sweep | report | runs``.

Exit codes: 0 when every checked law passes, 1 when one does not, 2 for usage or config errors
(one line on stderr, no traceback), 130 when interrupted (finished runs stay stored).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .diagnosis import diagnose
from .engine.executor import EXECUTORS, make_executor
from .engine.experiment import Experiment
from .engine.trainer import check_device
from .laws import LAWS, PASS, Verdict
from .observables.probes import Loss, probe_from_dict
from .observables.schedule import Schedule
from .report import write_report
from .theory.scaling import FORMS, fit_scaling_law
from .report.figures import figure_data_uri, figure_png, scaling_panels
from .runner import check, run_experiments
from .store import Store
from .sweep import sweep_experiments
from .systems.system import System

DB_NAME, REPORT_NAME = "lmech.db", "report.html"


def _err(message: str) -> None:
    if sys.stderr.isatty():
        message = "\r\033[K" + message  # overwrite the step ticker
    print(message, file=sys.stderr, flush=True)


def _ticker(label: str, step: int, total: int) -> None:
    """Live step counter on a terminal; silent when stderr is a file or pipe."""
    if sys.stderr.isatty():
        print(f"\r\033[K  {label}: step {step}/{total}", end="", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmech", description="Learning mechanics you can run: theory, measurement, verdict.")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list the laws in the atlas")
    ls.add_argument("--markdown", action="store_true", help="print the README's law catalogue")
    c = sub.add_parser("check", help="run laws and print their verdicts")
    c.add_argument("laws", nargs="*", metavar="LAW", help="law ids (see `lmech list`)")
    c.add_argument("--all", action="store_true", help="check every law in the atlas")
    scale = c.add_mutually_exclusive_group()
    scale.add_argument("--quick", dest="scale", action="store_const", const="quick", help="quick scale (default)")
    scale.add_argument("--full", dest="scale", action="store_const", const="full", help="full scale")
    c.add_argument("--out", default="lmech-out", help="folder for lmech.db and report.html (default: lmech-out)")
    c.add_argument("--force", action="store_true", help="retrain runs that are already stored")
    c.add_argument("--device", default="cpu", help="torch device to train on (default: cpu)")
    _executor_args(c)
    n = sub.add_parser("run", help="train one system from a JSON config and store its run")
    n.add_argument("config", help='JSON file: a system ({"architecture", "data", "task", "rule"}) or {"system": ..., "probes": [...]}')
    n.add_argument("--out", default="lmech-out")
    n.add_argument("--force", action="store_true", help="retrain even if an identical run is stored")
    n.add_argument("--device", default="cpu")
    w = sub.add_parser("sweep", help="train a grid of systems from a JSON file and print a table")
    w.add_argument("grid", help='JSON file: {"base": system, "axes": {"rule.lr": [...], ...}, "probes": [...]}')
    w.add_argument("--out", default="lmech-out")
    w.add_argument("--force", action="store_true", help="retrain runs that are already stored")
    w.add_argument("--device", default="cpu")
    _executor_args(w)
    r = sub.add_parser("report", help="write report.html from the stored verdicts")
    r.add_argument("--out", default="lmech-out")
    u = sub.add_parser("runs", help="list stored runs, or export their metrics")
    u.add_argument("--out", default="lmech-out")
    u.add_argument("--csv", metavar="FILE", help="write the long-format metrics (run_id,step,name,value) to FILE")
    g = sub.add_parser("diagnose", help="apply the theory to one stored run: findings, what they mean, what to try")
    g.add_argument("run_id", help="a run id from `lmech runs` (trained by lmech or recorded by a Tracker)")
    g.add_argument("--out", default="lmech-out", help="folder holding lmech.db (default: lmech-out)")
    g.add_argument("--html", metavar="FILE", help="also write the diagnosis page (default: OUT/diagnosis-RUN_ID.html)")
    f = sub.add_parser("fit-scaling", help="fit a scaling law to a CSV of model sizes, data sizes and losses")
    f.add_argument("csv", help="CSV file with a header row")
    f.add_argument("--n", required=True, metavar="COL", help="column of model sizes N (or the one variable)")
    f.add_argument("--d", metavar="COL", help="column of data sizes D (two-variable forms)")
    f.add_argument("--loss", required=True, metavar="COL", help="column of losses")
    f.add_argument("--form", default=None, choices=sorted(FORMS),
                   help="chinchilla (default with --d), kaplan, quanta; power (default without --d), power-no-offset")
    f.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap replicates for 95%% intervals")
    f.add_argument("--budgets", type=float, nargs="*", default=(), metavar="C",
                   help="compute budgets (FLOPs, 6 N D) for the compute-optimal N*, D*, L*")
    f.add_argument("--figure", metavar="PNG", help="write fitted-vs-measured (and loss-vs-compute) panels to PNG")
    return p


def _executor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", default="auto", help="parallel workers: a number, or auto (default: one single-threaded process per core, "
                   "measured fastest on 2 cores)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="inprocess, pool (local processes) or ray (default: inprocess for 1 worker, pool for more)")
    p.add_argument("--address", default=None, help="host:port of an existing Ray cluster (with --executor ray)")


def _executor(args: argparse.Namespace):
    return make_executor(args.executor, args.workers, args.address)


def catalogue_markdown() -> str:
    """The law catalogue of the README, generated from the registry."""
    lines = ["| law | pillar | claim | tolerance | source |", "|---|---|---|---|---|"]
    for law_id, law in LAWS.items():
        cells = [f"`{law_id}`", law.pillar, law.claim, law.tolerance_note, law.citation]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _cmd_list(markdown: bool) -> int:
    if markdown:
        print(catalogue_markdown())
        return 0
    width = max(len(i) for i in LAWS)
    for law_id, law in LAWS.items():
        print(f"{law_id:<{width}}  [{law.pillar}]  {law.title}")
    return 0


def _table(verdicts: list[Verdict]) -> str:
    w = max([len("law"), *(len(v.law) for v in verdicts)])
    lines = [f"{'law':<{w}} {'scale':<6} {'verdict':<14} {'error':>10} {'tolerance':>10}"]
    lines += [f"{v.law:<{w}} {v.scale:<6} {v.status.upper():<14} {v.error:>10.4g} {v.tolerance:>10.4g}" for v in verdicts]
    return "\n".join(lines)


def _prerender(verdict: Verdict) -> None:
    """Render the law's figure now (cached for the report) instead of after the last law."""
    if verdict.panels:
        figure_data_uri(verdict.panels)


def _cmd_check(args: argparse.Namespace) -> int:
    if args.all == bool(args.laws):
        raise ValueError("name the laws to check, or pass --all (not both); see `lmech list`")
    law_ids = list(LAWS) if args.all else args.laws
    out = Path(args.out)
    start = time.perf_counter()
    check_device(args.device)
    executor = _executor(args)
    with Store(out / DB_NAME) as store:
        verdicts = check(law_ids, args.scale or "quick", store, force=args.force, device=args.device, executor=executor,
                         progress=_err, step_progress=_ticker, on_verdict=_prerender)
        report = write_report([Verdict.from_dict(d) for d in store.verdicts()], out / REPORT_NAME)
    print(_table(verdicts))
    print(f"\n{sum(v.status == PASS for v in verdicts)}/{len(verdicts)} laws pass in {time.perf_counter() - start:.0f}s; "
          f"report: {report}; store: {out / DB_NAME}")
    return 0 if all(v.status == PASS for v in verdicts) else 1


def _cmd_run(args: argparse.Namespace) -> int:
    spec = _read_json(args.config, "config")
    system = System.from_dict(spec.get("system", spec))
    check_device(args.device)
    every = Schedule(every=max(system.rule.steps // 100, 1))
    probes = ([probe_from_dict(p) for p in spec["probes"]] if "probes" in spec
              else [Loss(every), Loss(every, split="test")])
    with Store(Path(args.out) / DB_NAME) as store:
        runs = run_experiments([Experiment({"system": system.id}, system, probes)], store, force=args.force,
                               device=args.device, progress=_err, step_progress=_ticker)
    result = next(iter(runs.values()))
    if result.error:
        raise ValueError(f"run {result.run_id} failed: {result.error}")
    print(f"run {result.run_id} (system {system.id}): {result.outcome}"
          + (f" at step {result.diverged_step}" if result.diverged_step is not None else ""))
    for name in result.names():
        print(f"  {name:<32} {result.last(name):.6g}")
    return 0


def _read_json(path: str, what: str) -> dict:
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return spec


def _bar(done: int, total: int) -> None:
    """A progress bar on a terminal (silent when stderr is a file or pipe)."""
    if sys.stderr.isatty():
        filled = int(30 * done / max(total, 1))
        print(f"\r\033[K  [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} runs", end="", file=sys.stderr, flush=True)


def _cmd_sweep(args: argparse.Namespace) -> int:
    spec = _read_json(args.grid, "sweep file")
    unknown = set(spec) - {"base", "axes", "probes"}
    if unknown or "base" not in spec or "axes" not in spec:
        raise ValueError(f"sweep file {args.grid} needs keys base and axes (optional probes); "
                         + (f"unknown: {sorted(unknown)}" if unknown else "missing one"))
    check_device(args.device)
    executor = _executor(args)
    experiments = sweep_experiments(spec["base"], spec["axes"], spec.get("probes"))
    arrived = []

    def on_run(result) -> None:
        arrived.append(result.run_id)
        _bar(len(arrived), len(experiments))

    with Store(Path(args.out) / DB_NAME) as store:
        runs = run_experiments(experiments, store, executor=executor, force=args.force, device=args.device,
                               on_run=on_run)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    table = runs.table()
    axes = list(spec["axes"])
    metrics = [c for c in table.columns if "/" in c and not c.startswith(("architecture.", "data.", "task.", "rule."))]
    print(table[axes + ["outcome"] + metrics + ["run_id"]].to_string(index=False))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    with Store(Path(args.out) / DB_NAME) as store:
        verdicts = [Verdict.from_dict(d) for d in store.verdicts()]
    if not verdicts:
        raise ValueError(f"no verdicts stored in {Path(args.out) / DB_NAME}; run `lmech check` first")
    print(write_report(verdicts, Path(args.out) / REPORT_NAME))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    with Store(Path(args.out) / DB_NAME) as store:
        if args.csv:
            print(store.export_csv(args.csv))
            return 0
        rows = store.runs()
    print(f"{'run':<24} {'system':<18} {'outcome':<10} {'wall s':>8} {'metrics':>8}")
    for r in rows:
        print(f"{r['run_id']:<24} {r['system_id']:<18} {r['outcome']:<10} {r['wall_time'] or 0:>8.1f} {r['metrics']:>8}"
              + (f"  {r['error']}" if r["error"] else ""))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    path = Path(args.out) / DB_NAME
    if not path.exists():
        raise ValueError(f"no store at {path}; pass --out with the folder that holds {DB_NAME}")
    with Store(path) as store:
        run = store.load_run(args.run_id)
    if run is None:
        raise ValueError(f"run {args.run_id!r} is not in {path}; `lmech runs --out {args.out}` lists the stored runs")
    result = diagnose(run)
    print(result.text(), end="")
    print(result.write_html(args.html or Path(args.out) / f"diagnosis-{args.run_id}.html"))
    return 0


def _cmd_fit_scaling(args: argparse.Namespace) -> int:
    import pandas as pd

    try:
        table = pd.read_csv(args.csv)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{args.csv}: cannot read it as CSV ({exc})") from None
    wanted = [c for c in (args.n, args.d, args.loss) if c is not None]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"{args.csv} has no column(s) {missing}; its columns: {list(table.columns)}")
    form = args.form or ("chinchilla" if args.d else "power")
    d = table[args.d].to_numpy(float) if args.d else None
    fit = fit_scaling_law(table[args.n].to_numpy(float), d, table[args.loss].to_numpy(float), form=form,
                          bootstrap=args.bootstrap)
    print(fit.summary())
    for note in fit.warnings:
        print(f"warning: {note}")
    if args.budgets:
        n_opt, d_opt, l_opt = fit.compute_optimal(args.budgets)
        bounds = fit.compute_optimal_interval(args.budgets) if fit.replicates is not None else None
        for i, c in enumerate(args.budgets):
            extra = (f" (95%: N* [{bounds['N'][0][i]:.3g}, {bounds['N'][1][i]:.3g}], L* [{bounds['L'][0][i]:.4g}, "
                     f"{bounds['L'][1][i]:.4g}])" if bounds else "")
            print(f"C = {c:.3g}: N* = {n_opt[i]:.3g}, D* = {d_opt[i]:.3g}, L* = {l_opt[i]:.4g}{extra}")
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        Path(args.figure).write_bytes(figure_png(scaling_panels(fit, table[args.n].to_numpy(float), d,
                                                                table[args.loss].to_numpy(float), x_label=args.n)))
        print(args.figure)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list(args.markdown)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "fit-scaling":
            return _cmd_fit_scaling(args)
        if args.command == "diagnose":
            return _cmd_diagnose(args)
        return _cmd_runs(args)
    except ValueError as exc:
        _err(f"lmech: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("lmech: interrupted; every finished run is stored, rerun to continue")
        return 130
    except BrokenPipeError:  # `lmech runs | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-law cost of the quick atlas, from the store that `lmech check --all --quick` wrote.

For each law: its runs (from its verdict), the training time they took (the runs' own wall times, summed: CPU-side
cost on one worker; a run shared by two laws counts for both) and its share of the total. Sorted by cost, as a
markdown table; written to bench/out/atlas_profile.json. The atlas's own wall time is what `make atlas` reports
(two workers share the runs).

    .venv/bin/python bench/atlas_profile.py lmech-out/lmech.db
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmech.store import Store

from _benchutil import OUT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store", help="the lmech.db of a quick atlas")
    args = ap.parse_args()
    with Store(args.store) as store:
        wall = {r["run_id"]: r["wall_time"] or 0.0 for r in store.runs()}
        verdicts = store.verdicts()
    rows = []
    for v in verdicts:
        ids = list(v["runs"].values())
        rows.append({"law": v["law"], "status": v["status"], "runs": len(ids),
                     "train_s": sum(wall.get(i, 0.0) for i in ids)})
    rows.sort(key=lambda r: -r["train_s"])
    total = sum(r["train_s"] for r in rows)
    OUT.mkdir(exist_ok=True)
    (OUT / "atlas_profile.json").write_text(json.dumps({"store": str(Path(args.store)), "laws": rows}, indent=1))
    print("| law | verdict | runs | training s (one worker) | share |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['law']}` | {r['status']} | {r['runs']} | {r['train_s']:.1f} | {r['train_s'] / total:.1%} |")
    print(f"| all {len(rows)} laws | | {sum(r['runs'] for r in rows)} | {total:.1f} | |")


if __name__ == "__main__":
    main()

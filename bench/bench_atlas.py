"""Wall time of the README's main job on this machine: a fresh install, then the quick atlas.

Runs `make install` into a new virtual environment (torch from the wheel pip finds first), then `make atlas` (the
quick atlas, `lmech check --all --quick`, into an empty output folder, in the environment the Makefile sets),
timing each phase.
Writes bench/out/atlas.json. Target (issue 2): under 5 minutes in all on 2 cores.

    python bench/bench_atlas.py [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary venv and output")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lmech-bench-atlas-"))
    venv, out = tmp / "venv", tmp / "out"
    install_s, proc = _timed(["make", "-C", str(ROOT), "install", f"VENV={venv}"])
    if proc.returncode:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return 1
    atlas_s, proc = _timed(["make", "-C", str(ROOT), "atlas", f"VENV={venv}", f"OUT={out}"])
    print(proc.stdout)
    result = {"cpu_count": os.cpu_count(), "install_s": round(install_s, 1), "atlas_s": round(atlas_s, 1),
              "total_s": round(install_s + atlas_s, 1), "atlas_exit": proc.returncode, "target_s": 300}
    print(json.dumps(result, indent=1))
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "atlas.json").write_text(json.dumps(result, indent=1))
    if not args.keep:
        shutil.rmtree(tmp)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

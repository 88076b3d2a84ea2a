"""GPU benchmark: every model and engine up to 100,000,000 rows (x 16 features) in float32.

Writes comparisons/gpu_bench_<gpu name>.md: time per iteration, passes over X and Y at the
copy bandwidth measured in the same run, the speed-up over this machine's cpu at 1,000,000
rows, and the run-to-run difference at the largest size. Without CUDA it says so and exits
0. `--tiny --device cpu` runs the same code at toy sizes (for tests).

    python comparisons/gpu_bench.py            # on a CUDA machine, about a minute
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from gradtwin.cli.files import atomic_write_text
from gradtwin.devices import resolve_device
from gradtwin.models import MODELS
from gradtwin.training import ENGINES, make_engine

# the tabular models, on synthetic n x 16 tables (the layered models read images and character windows), and
# the engines that run on a GPU (the tape twin computes with NumPy on the cpu)
BENCHED_MODELS = [name for name, m in MODELS.items() if m.scales == "hand"]
BENCHED_ENGINES = [e for e in ENGINES if e != "tape"]

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as `python comparisons/gpu_bench.py` it is there; by runpy it is not
    sys.path.insert(0, str(HERE))

import throughput  # noqa: E402  (comparisons/throughput.py, beside this script)

GPU_SIZES = (1_000_000, 10_000_000, 100_000_000)
CPU_SIZE = 1_000_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu with --tiny (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the code path")
    parser.add_argument("--out", default=str(HERE), help="folder for the table")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here (torch.cuda.is_available() is False); nothing run")
        return 0
    device = resolve_device(args.device, "float32")
    sizes, cpu_sizes = ((1000, 3000), (1000,)) if args.tiny else (GPU_SIZES, (CPU_SIZE,))
    bw_bytes, budget = (2**20, 0.01) if args.tiny else (2**31, 0.5)
    models, engines = [MODELS[name] for name in BENCHED_MODELS], list(BENCHED_ENGINES)

    def log(line: str) -> None:
        print(line, flush=True)

    rows = throughput.run(models, engines, make_engine, str(device), sizes, 16, "float32", bw_bytes, budget, log)
    cpu_bytes = min(bw_bytes, 2**28)
    cpu = throughput.run(models, engines, make_engine, "cpu", cpu_sizes, 16, "float32", cpu_bytes, budget, log)
    info = throughput.describe(device)
    name = str(info["name"])
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    text = "\n".join(
        [
            f"# gradtwin GPU benchmark: {name}",
            "",
            f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `comparisons/gpu_check.sh`; "
            + ", ".join(f"{k} {v}" for k, v in info.items())
            + f"; {torch.get_num_threads()} cpu threads.",
            f"Copy bandwidth measured in this run: {rows[0].bandwidth / 1e9:.1f} GB/s"
            + (f" ({device}), {cpu[0].bandwidth / 1e9:.1f} GB/s (cpu)." if cpu else "."),
            "One iteration = loss, gradients and the update, float32, TF32 off, deterministic algorithms on.",
            "'passes over X,Y' = time per iteration x bandwidth / bytes(X, Y): 1 is the memory-bound floor.",
            "'vs cpu' compares ns per row against the same engine on this machine's cpu at "
            f"{cpu_sizes[0]:,} rows. 'run-to-run diff': largest |difference| of loss and gradients "
            "between two runs at the same point (0 = bitwise equal).",
            "",
            throughput.table(rows, cpu),
            "",
        ]
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out, f"gpu_bench_{slug}.md")
    atomic_write_text(path, text, force=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

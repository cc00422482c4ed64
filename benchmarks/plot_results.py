"""Draw the results that ``bench_step.py --json`` stored: where the time goes, and how it shrank.

Left: forward + backward milliseconds of every block at one batch size, for scratchnn before and
after the optimisations and for torch.nn. Right: the step-time ratio scratchnn / torch.nn of every
stored run, in the order they were measured (1.0 = as fast as torch.nn).

Usage (from the repository root)::

    python benchmarks/plot_results.py                                  # cpu.json -> cpu.png
    python benchmarks/plot_results.py --json benchmarks/results/cuda.json --out cuda.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the non-interactive backend)

RESULTS = Path(__file__).resolve().parent / "results"


def run_named(data, label):
    for run in data["runs"]:
        if run["label"] == label:
            return run
    raise SystemExit(f"no run labelled {label!r}; "
                     f"stored runs: {[run['label'] for run in data['runs']]}")


def block_times(run, batch, framework):
    """Forward and backward milliseconds of every block of ``framework`` ('scratchnn' or
    'torch')."""
    rows = run["profile"][str(batch)]
    return ([row["block"] for row in rows], [row[f"{framework}_forward_ms"] for row in rows],
            [row[f"{framework}_backward_ms"] for row in rows])


def plot_profile(ax, data, before, after, batch):
    """Horizontal stacked bars (forward, then backward) per block: before, after, torch.nn."""
    series = [("scratchnn before", run_named(data, before), "scratchnn", "tab:red"),
              ("scratchnn after", run_named(data, after), "scratchnn", "tab:blue"),
              ("torch.nn", run_named(data, after), "torch", "tab:gray")]
    names = block_times(series[0][1], batch, "scratchnn")[0]
    height = 0.8 / len(series)
    for index, (label, run, framework, color) in enumerate(series):
        _, forward, backward = block_times(run, batch, framework)
        rows = [position + (index - 1) * height for position in range(len(names))]
        ax.barh(rows, forward, height, color=color, label=f"{label} (forward | backward)")
        ax.barh(rows, backward, height, left=forward, color=color, alpha=0.45)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per training step")
    ax.set_title(f"Where the time goes (batch {batch})")
    ax.legend(fontsize=7, loc="lower right")


def plot_ratios(ax, data):
    """Ratio of median step times, scratchnn / torch.nn, for every stored run and batch size."""
    runs = data["runs"]
    batches = sorted({int(batch) for run in runs for batch in run["steps"]})
    for batch in batches:
        points = [(index, run["steps"][str(batch)]["ratio"]) for index, run in enumerate(runs)
                  if str(batch) in run["steps"]]
        ax.plot(*zip(*points), marker="o", label=f"batch {batch}")
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([run["label"] for run in runs], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("step time, scratchnn / torch.nn")
    ax.set_ylim(bottom=0)
    ax.set_title("One training step, relative to torch.nn")
    ax.legend(fontsize=8)


def plot(data, before="before", after="after", batch=64):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=100,
                                      gridspec_kw={"width_ratios": [3, 2]})
    plot_profile(left, data, before, after, batch)
    plot_ratios(right, data)
    machine = run_named(data, after)["machine"]
    fig.suptitle(f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}"
                 + (f", {machine['gpu']}" if machine.get("gpu") else ""), fontsize=9)
    fig.tight_layout()
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=RESULTS / "cpu.json", type=Path)
    parser.add_argument("--out", default=None, type=Path,
                        help="PNG file (default: the JSON's name, .png)")
    parser.add_argument("--before", default="before")
    parser.add_argument("--after", default="after")
    parser.add_argument("--batch", default=64, type=int, help="batch size of the profile panel")
    args = parser.parse_args()
    data = json.loads(args.json.read_text())
    out = args.out or args.json.with_suffix(".png")
    plot(data, args.before, args.after, args.batch).savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

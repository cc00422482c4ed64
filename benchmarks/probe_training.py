"""Time a few training steps of candidate U-Nets on fresh pairs, to project a long run's cost.

Before committing the machine for hours, measure: each candidate (depth, upsampling, crop,
batch) runs ``--warmup`` steps, then ``--steps`` timed steps with the from-scratch framework
(Adam, fresh crops and noise of a bundled photograph: the data's content does not change the
time). Prints seconds per step, pixels per second, and the hours that ``--total-steps`` would
take. Writes nothing unless ``--out FILE`` (JSON, with the machine).

    python benchmarks/probe_training.py --steps 20 --out benchmarks/results/probe_cpu.json
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scratchnn import build_network  # noqa: E402
from scratchnn.data import FreshPairs, load_photo  # noqa: E402
from scratchnn.steppers import make_stepper  # noqa: E402

CANDIDATES = [  # (depth, upsampling, crop, batch): 64x64 crops at 16 a batch = 65,536 pixels
    (3, "transposed", 32, 32),
    (3, "transposed", 64, 16),
    (3, "nearest", 64, 16),
    (4, "transposed", 64, 16),
    (4, "nearest", 64, 16),
    (5, "nearest", 64, 16),
    (4, "nearest", 128, 4),
]


def seconds_per_step(depth, upsampling, crop, batch, warmup, steps, channels):
    torch.manual_seed(0)
    network = build_network("unet", channels, depth=depth, upsampling=upsampling)
    stepper = make_stepper(network, "adam", 1e-3)
    pairs = FreshPairs((load_photo("astronaut"),), crop_size=crop)
    for step in range(warmup):
        stepper.step(*pairs.batch(step, batch))
    started = time.perf_counter()
    for step in range(warmup, warmup + steps):
        stepper.step(*pairs.batch(step, batch))
    return (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--total-steps", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for depth, upsampling, crop, batch in CANDIDATES:
        seconds = seconds_per_step(depth, upsampling, crop, batch, args.warmup, args.steps,
                                   args.channels)
        pixels = crop * crop * batch
        rows.append({"depth": depth, "upsampling": upsampling, "crop": crop, "batch": batch,
                     "seconds_per_step": seconds, "pixels_per_second": pixels / seconds,
                     "hours_for_total": seconds * args.total_steps / 3600})
        print(f"depth {depth} {upsampling:10s} crop {crop:3d} batch {batch:2d}: "
              f"{seconds:.3f} s/step, {pixels / seconds / 1e3:.0f}k pixels/s, "
              f"{seconds * args.total_steps / 3600:.1f} h for {args.total_steps} steps",
              flush=True)
    if args.out:
        record = {"what": "seconds per training step of U-Net candidates (scratchnn, Adam)",
                  "channels": args.channels, "threads": torch.get_num_threads(),
                  "machine": {"cpu": platform.processor() or platform.machine(),
                              "torch": torch.__version__}, "rows": rows}
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

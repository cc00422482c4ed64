"""Small-scale comparisons of U-Net variants, several seeds each, before one is trained for hours.

Each variant trains the from-scratch U-Net (48 channels) for ``--steps`` Adam steps on fresh
pairs of CBSD432 (``--crop`` crops, ``--batch`` a batch, cosine schedule), then is measured on
Kodak24 under the standard protocol (sigma 25, unclipped noise, fixed noise seed). Every variant
runs with every seed in ``--seeds`` (the seed fixes the initial weights and the batches, so
variants with the same seed see the same crops and the same noise). Prints mean and spread,
and writes the runs to ``--out`` (JSON, with the machine) after each one; ``--resume`` skips
the runs already there.

    python benchmarks/probe_quality.py --out results/probes/unet_variants.json --resume

Variants (``--variants``): ``transposed`` and ``nearest`` (upsampling, unclipped float
targets), ``clipped`` (nearest, but noisy images stored as the course does: clipped to 0..255
and rounded), ``depth3`` (nearest, 3 levels).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.denoisers import machine  # noqa: E402
from scratchnn import build_network, datasets  # noqa: E402
from scratchnn.data import FreshPairs  # noqa: E402
from scratchnn.settings import TrainSettings  # noqa: E402
from scratchnn.train import train  # noqa: E402

VARIANTS = {  # name -> (U-Net options, clip)
    "transposed": ({"depth": 4, "upsampling": "transposed"}, False),
    "nearest": ({"depth": 4, "upsampling": "nearest"}, False),
    "clipped": ({"depth": 4, "upsampling": "nearest"}, True),
    "depth3": ({"depth": 3, "upsampling": "nearest"}, False),
}


def one_run(variant, seed, args, photos, kodak):
    options, clip = VARIANTS[variant]
    torch.manual_seed(seed)
    network = build_network("unet", args.channels, **options)
    pairs = FreshPairs(tuple(photos), crop_size=args.crop, clip=clip, augment=True, seed=seed)
    settings = TrainSettings(batch_size=args.batch, lr_schedule="cosine", seed=seed)
    started = time.perf_counter()
    history = train(network, pairs, None, 1, settings=settings, validation={"kodak24": kodak},
                    steps_per_epoch=args.steps, progress=False)
    return {"variant": variant, "seed": seed, "options": options, "clip": clip,
            "kodak24_psnr_db": history["val_psnr"][-1], "seconds": time.perf_counter() - started}


def summary(runs):
    lines = []
    for variant in VARIANTS:
        values = [run["kodak24_psnr_db"] for run in runs if run["variant"] == variant]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            lines.append(f"{variant:10s} {statistics.mean(values):.3f} dB  (sd {spread:.3f}, "
                         f"{len(values)} seeds: " + ", ".join(f"{v:.3f}" for v in values) + ")")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    runs = json.loads(out.read_text())["runs"] if args.resume and out.exists() else []
    photos = datasets.load_standard_set("cbsd432")[1]
    kodak = datasets.standard_noisy_set("kodak24", 25)
    for seed in args.seeds:
        for variant in args.variants:
            if any(run["variant"] == variant and run["seed"] == seed for run in runs):
                continue
            runs.append(one_run(variant, seed, args, photos, kodak))
            print(f"{variant:10s} seed {seed}: {runs[-1]['kodak24_psnr_db']:.3f} dB "
                  f"({runs[-1]['seconds']:.0f} s)", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({
                "what": f"U-Net variants, {args.steps} Adam steps (lr 1e-3, cosine) of "
                        f"{args.batch} fresh {args.crop}x{args.crop} CBSD432 crops, 48 "
                        f"channels; Kodak24, sigma 25, standard protocol",
                "settings": vars(args), "machine": machine(), "runs": runs}, indent=1))
    print(summary(runs))


if __name__ == "__main__":
    main()

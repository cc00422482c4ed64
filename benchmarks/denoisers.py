"""Classical denoisers on the book's validation crops: the baselines a trained network must beat.

What it measures: for each held-out validation set ("photos": chelsea and flower; "varied": grey
photographs, textures and a tissue section) it takes the first K noisy crops (32x32, Gaussian
noise sigma = 25/255) of ``make_validation_set(1000, seed=0, ...)`` -- the same crops the training
command validates on -- and denoises them with

    noisy input       do nothing (the PSNR every denoiser starts from)
    box 3x3           the mean of each pixel's 3x3 neighbourhood
    Gaussian blur     skimage.filters.gaussian, its width TUNED (see below)
    total variation   skimage.restoration.denoise_tv_chambolle, its weight TUNED
    wavelet           skimage.restoration.denoise_wavelet, BayesShrink, told the noise sigma,
                      its number of scales TUNED
    non-local means   skimage.restoration.denoise_nl_means, told sigma, its filter strength TUNED
    BM3D              bm3d.bm3d_rgb, told sigma (the classical state of the art)

and optionally a trained network (``--model``). It prints, per set, the mean PSNR (dB), the gain
over the noisy input and the seconds per image, and writes everything to a JSON file.

Why: a PSNR such as "27.8 dB" means little on its own. Next to "a blur gets X dB and BM3D, which
knows the noise level exactly, gets Y dB" it says how much the network learned.

Rules that keep the comparison fair:

* every method denoises each 32x32 crop on its own, as a float image (H, W, 3) in [0, 1]; the
  output is clipped to [0, 1] before the PSNR (``scratchnn.metrics.psnr``);
* the methods that have a knob (Gaussian width, TV weight, wavelet scales, NL-means strength)
  are TUNED: each value of a small grid is tried on a separate tuning set, crops of the
  TRAINING photographs (``make_validation_set(..., seed=1, photos=TRAIN_PHOTOS)``), and the best
  value is then used on the validation sets. The validation crops are never used to choose
  anything, just as the network never trains on them. The chosen values go into the table and
  the JSON;
* the wavelet, NL-means and BM3D methods are given the true noise sigma, which a network trained
  with Noise2Noise never sees: these baselines are, if anything, favoured;
* seconds per image are wall-clock time (and process CPU time in the JSON) for the whole set
  divided by K, after one warm-up call. On a busy machine they are only rough.

Usage (from the repository root)::

    python benchmarks/denoisers.py                       # K=200, both sets, all methods
    python benchmarks/denoisers.py --quick               # a few crops, a smoke test; no JSON
    python benchmarks/denoisers.py --methods box gaussian bm3d --sets photos
    python benchmarks/denoisers.py --model pretrained    # adds the best network shipped
    python benchmarks/denoisers.py --model seed000 --model runs/x/best.pth   # named, or a file

Other code can add its own network row: ``network_row(name, predict_fn, noisy, clean)`` takes any
function from uint8 images (N, 3, H, W) to floats 0..255, like ``scratchnn.Model().predict``.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from scratchnn.data import (TRAIN_PHOTOS, VALIDATION_PHOTOS, VARIED_VALIDATION_PHOTOS,
                            GaussianNoise, make_validation_set, to_float)
from scratchnn.metrics import psnr

SIGMA = 25 / 255  # the noise level of the validation sets, on the [0, 1] scale
VALIDATION_SEED = 0  # the training command validates on make_validation_set(1000, seed=0)
VALIDATION_SET_SIZE = 1000  # K crops are the first K of these 1000
TUNING_SEED = 1
SETS = {"photos": VALIDATION_PHOTOS, "varied": VARIED_VALIDATION_PHOTOS}
DEFAULT_JSON = Path(__file__).parent / "results" / "denoisers.json"

# --- the denoisers: each takes one noisy image (H, W, 3), floats in [0, 1], and the noise sigma --


def noisy_input(image, sigma):
    """Do nothing: the baseline every denoiser is measured against."""
    return image


def box_filter(image, sigma):
    """Replace each pixel by the mean of its 3x3 neighbourhood (edges mirrored), per channel."""
    from scipy.ndimage import uniform_filter
    return uniform_filter(image, size=(3, 3, 1), mode="reflect")


def gaussian_blur(image, sigma, width=1.0):
    """Gaussian blur of standard deviation ``width`` pixels, per channel."""
    from skimage.filters import gaussian
    return gaussian(image, sigma=width, mode="reflect", channel_axis=-1)


def total_variation(image, sigma, weight=0.1):
    """Chambolle's total-variation denoising: flat regions, sharp edges; larger weight, flatter.

    ``eps=1e-5``: with skimage's default (2e-4) the iterations stop before they converge, and
    PSNR then jumps up and down as the weight grows instead of rising to one peak.
    """
    from skimage.restoration import denoise_tv_chambolle
    return denoise_tv_chambolle(image, weight=weight, eps=1e-5, channel_axis=-1)


def wavelet(image, sigma, levels=3):
    """Soft-threshold the Haar wavelet coefficients (BayesShrink) of ``levels`` scales, in YCbCr,
    given the noise sigma.

    skimage's default number of scales is meant for photographs: on a 32x32 crop it is only 2,
    which leaves coarse noise in place, so ``levels`` is tuned. (The smoother ``sym4`` wavelet
    scored about 0.3 dB more on the tuning crops, but PyWavelets warns that a 32x32 image is too
    small for more than 2 of its scales.)
    """
    from skimage.restoration import denoise_wavelet
    return denoise_wavelet(image, sigma=sigma, wavelet="db1", method="BayesShrink", mode="soft",
                           wavelet_levels=levels, channel_axis=-1, convert2ycbcr=True,
                           rescale_sigma=True)


def nl_means(image, sigma, strength=0.8):
    """Non-local means: average pixels whose surrounding 5x5 patches look alike.

    ``h = strength * sigma``. Patches are 5x5 and searched up to 6 pixels away (a 13x13 window),
    sizes that suit a 32x32 crop; skimage's defaults (7x7 patches, 11 pixels away) are meant for
    whole photographs.
    """
    from skimage.restoration import denoise_nl_means
    return denoise_nl_means(image, patch_size=5, patch_distance=6, h=strength * sigma,
                            sigma=sigma, fast_mode=True, channel_axis=-1)


def bm3d_rgb(image, sigma):
    """BM3D for colour images: block matching on the luminance, then 3-D collaborative filtering.

    Slow here for a reason that has nothing to do with the crop: each call of the package's
    compiled hard-thresholding stage costs about 0.75 s even on a 16x16 image, once per colour
    channel, so a 32x32 crop takes over 2 s (a 128x128 image only about twice as long).
    """
    import bm3d
    return bm3d.bm3d_rgb(image, sigma_psd=sigma)


@dataclass(frozen=True)
class Method:
    """A denoiser, its name on the command line and in the table, and its knob if it has one."""
    name: str
    label: str
    denoise: Callable
    knob: str = ""  # the keyword argument of ``denoise`` that is tuned; "" when none
    grid: tuple = ()  # the values of the knob tried on the tuning set

    @property
    def tuned(self):
        return bool(self.knob)


METHODS = {method.name: method for method in [
    Method("noisy", "noisy input", noisy_input),
    Method("box", "box 3x3", box_filter),
    Method("gaussian", "Gaussian blur", gaussian_blur, "width",
           (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)),
    Method("tv", "total variation", total_variation, "weight",
           (0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15, 0.2)),
    Method("wavelet", "wavelet (BayesShrink)", wavelet, "levels", (1, 2, 3, 4, 5)),
    Method("nlmeans", "non-local means", nl_means, "strength", (0.4, 0.5, 0.6, 0.7, 0.8, 1.0)),
    Method("bm3d", "BM3D", bm3d_rgb),
]}

# --- applying a denoiser to a batch of crops -----------------------------------------------------


def to_hwc(images):
    """uint8 tensor (N, 3, H, W) -> float64 numpy (N, H, W, 3) in [0, 1], the layout of skimage."""
    return to_float(images, torch.float64).permute(0, 2, 3, 1).numpy()


def to_nchw(images):
    """float numpy (N, H, W, 3) -> float64 tensor (N, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float64)


def denoise_each(denoise, noisy, sigma=SIGMA, **knob):
    """Denoise every crop of ``noisy`` (uint8 (N, 3, H, W)) on its own; floats in [0, 1]."""
    crops = to_hwc(noisy)
    denoised = np.stack([np.clip(denoise(crop, sigma, **knob), 0, 1) for crop in crops])
    return to_nchw(denoised)


def score(denoised, clean):
    """Mean PSNR (dB) of denoised floats in [0, 1] against the clean uint8 crops."""
    return psnr(denoised, to_float(clean, torch.float64))


# --- tuning --------------------------------------------------------------------------------------


def tune(method, noisy, clean, sigma=SIGMA):
    """Try every value of the method's grid on the tuning crops; return the best one and the curve.

    The curve is a list of ``(value, PSNR in dB)``, one per grid value, to print or plot.
    """
    curve = [(value, score(denoise_each(method.denoise, noisy, sigma, **{method.knob: value}),
                           clean))
             for value in method.grid]
    best_value, _ = max(curve, key=lambda point: point[1])
    return best_value, curve


def tune_all(methods, num_images, sigma=SIGMA):
    """Tune every method that has a knob on crops of the training photos (seed ``TUNING_SEED``).

    Returns ``{name: {"knob": ..., "value": ..., "curve": [...]}}``.
    """
    noisy, clean = tuning_set(num_images, sigma)
    chosen = {}
    for method in methods:
        if method.tuned:
            value, curve = tune(method, noisy, clean, sigma)
            chosen[method.name] = {"knob": method.knob, "value": value, "curve": curve}
    return chosen


def tuning_set(num_images, sigma=SIGMA):
    """Noisy and clean crops of the training photographs, never of a validation photograph."""
    return make_validation_set(num_images, seed=TUNING_SEED, noise=GaussianNoise(sigma),
                               photos=TRAIN_PHOTOS)


# --- rows of the table ---------------------------------------------------------------------------


def timed(function):
    """Run ``function()``; return its result, the wall-clock seconds and the CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def make_row(name, label, denoised, clean, noisy_db, wall, cpu, params=None):
    """One row of the table: PSNR, gain over the noisy input, seconds per image."""
    db = score(denoised, clean)
    return {"method": name, "label": label, "psnr_db": round(db, 3),
            "gain_db": round(db - noisy_db, 3),
            "seconds_per_image": round(wall / len(clean), 5),
            "cpu_seconds_per_image": round(cpu / len(clean), 5), "params": params or {}}


def method_row(method, noisy, clean, noisy_db, knob=None, sigma=SIGMA):
    """Denoise the crops with a classical ``method`` (``knob``: its tuned value, if any)."""
    knob = knob or {}
    denoise_each(method.denoise, noisy[:1], sigma, **knob)  # warm-up: imports, first-call costs
    denoised, wall, cpu = timed(lambda: denoise_each(method.denoise, noisy, sigma, **knob))
    return make_row(method.name, method.label, denoised, clean, noisy_db, wall, cpu, knob)


def network_row(name, predict_fn, noisy, clean, noisy_db=None):
    """A row for a trained network. ``predict_fn`` maps uint8 images (N, 3, H, W) to floats 0..255,
    like ``scratchnn.Model().predict``; it gets all crops at once, and each crop is still denoised
    on its own (a convolutional network does not mix the images of a batch)."""
    if noisy_db is None:
        noisy_db = score(to_float(noisy, torch.float64), clean)
    predict_fn(noisy[:1])  # warm-up
    output, wall, cpu = timed(lambda: predict_fn(noisy))
    denoised = (torch.as_tensor(output).detach().cpu().to(torch.float64) / 255).clamp(0, 1)
    if denoised.shape != noisy.shape:
        raise ValueError(f"{name}: predict_fn returned shape {tuple(denoised.shape)}, "
                         f"expected {tuple(noisy.shape)}")
    return make_row(name, name, denoised, clean, noisy_db, wall, cpu)


def validation_crops(photos, num_images, sigma=SIGMA):
    """The first ``num_images`` of the 1000 crops the training command validates on."""
    if num_images > VALIDATION_SET_SIZE:
        raise ValueError(f"--num-images is at most {VALIDATION_SET_SIZE}, got {num_images}")
    noisy, clean = make_validation_set(VALIDATION_SET_SIZE, seed=VALIDATION_SEED,
                                       noise=GaussianNoise(sigma), photos=photos)
    return noisy[:num_images], clean[:num_images]


def benchmark_set(photos, num_images, methods, chosen, networks=(), sigma=SIGMA):
    """All rows for one validation set. ``networks``: ``(name, predict_fn)`` pairs."""
    noisy, clean = validation_crops(photos, num_images, sigma)
    noisy_db = score(to_float(noisy, torch.float64), clean)
    rows = []
    for method in methods:
        knob = {method.knob: chosen[method.name]["value"]} if method.tuned else None
        rows.append(method_row(method, noisy, clean, noisy_db, knob, sigma))
        print(f"  {method.label:<24} done", file=sys.stderr, flush=True)
    for name, predict_fn in networks:
        rows.append(network_row(name, predict_fn, noisy, clean, noisy_db))
    return rows


# --- a trained network from the command line -----------------------------------------------------


def load_network_predict(spec):
    """A network row's ``(name, predict_fn)`` from the command line's ``--model``:

    * ``pretrained``: ``scratchnn.Model()``, the best network shipped with the package;
    * the name of a shipped network (e.g. ``seed000``): ``scratchnn.Model(network=name)``;
    * a weights file (``network.pth``, ``best.pth``) or a training checkpoint (``checkpoint.pt``).
    """
    if Path(spec).is_file():
        from scratchnn.files import read_network_weights
        from scratchnn.inference import denoise
        from scratchnn.networks import network_from_state_dict
        network = network_from_state_dict(read_network_weights(spec))
        return f"network ({spec})", lambda images: denoise(network, images)
    from scratchnn import Model
    model = Model() if spec == "pretrained" else Model(network=spec)
    model.load_pretrained_model()
    return f"network ({model.network_kind}, shipped)", model.predict


# --- output --------------------------------------------------------------------------------------


def format_table(set_name, photos, rows):
    """The table for one set, as text."""
    lines = [f"{set_name}: {', '.join(photos)}",
             f"  {'method':<30} {'PSNR dB':>8} {'gain dB':>8} {'s/image':>9}  parameters"]
    for row in rows:
        params = ", ".join(f"{key}={value}" for key, value in row["params"].items())
        lines.append(f"  {row['label']:<30} {row['psnr_db']:8.2f} {row['gain_db']:+8.2f} "
                     f"{row['seconds_per_image']:9.4f}  {params}")
    return "\n".join(lines)


def format_tuning(chosen):
    """One line per tuned method: the grid's PSNR values and the chosen value."""
    lines = []
    for name, result in chosen.items():
        curve = "  ".join(f"{value}: {db:.2f}" for value, db in result["curve"])
        lines.append(f"  {name:<9} {result['knob']}={result['value']}   ({curve} dB)")
    return "\n".join(lines)


def cpu_model():
    """The CPU's model name from ``lscpu`` if it is there, else from ``platform``."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines()
             if line.startswith("Model name")]
    return names[0] if names else platform.processor() or platform.machine()


def package_version(name):
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine():
    """What the timings were measured on."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "scikit-image": package_version("scikit-image"),
            "scipy": package_version("scipy"), "bm3d": package_version("bm3d"),
            "numpy": np.__version__}


def report(args, methods, chosen, results, seconds):
    """Everything worth keeping, as a dictionary ready for JSON."""
    return {
        "what": "Classical denoisers on the first K crops of make_validation_set(1000, seed=0); "
                "made by benchmarks/denoisers.py",
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "noise": {"kind": "gaussian", "sigma": SIGMA, "sigma_0_255": round(SIGMA * 255, 6)},
        "num_images": args.num_images, "crop_size": 32,
        "validation": {"seed": VALIDATION_SEED, "of": VALIDATION_SET_SIZE},
        "tuning": {"photos": list(TRAIN_PHOTOS), "seed": TUNING_SEED,
                   "num_images": args.tune_images, "chosen": chosen},
        "methods": {method.name: {"label": method.label, "grid": list(method.grid),
                                  "doc": (method.denoise.__doc__ or "").split("\n")[0]}
                    for method in methods},
        "sets": {name: {"photos": list(SETS[name]), "rows": rows}
                 for name, rows in results.items()},
        "wall_seconds": round(seconds, 1),
    }


# --- the command line ----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=200,
                        help="K: the first K crops of each 1000-crop validation set (default 200)")
    parser.add_argument("--tune-images", type=int, default=50,
                        help="crops of the training photos used to tune the knobs (default 50)")
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=["photos", "varied"])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--model", action="append", default=[], metavar="NETWORK",
                        help="add a network row: 'pretrained', a shipped network's name or a "
                             "weights/checkpoint file (repeatable)")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"where to write the results (default {DEFAULT_JSON}; "
                             "none with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 4 crops per set and 12 tuning crops; "
                             "no JSON unless --json")
    args = parser.parse_args(argv)
    if args.quick:
        # 12 tuning crops, not 4: the first 4 are nearly flat (sky, a wall) and would choose
        # the strongest blur of every grid.
        args.num_images, args.tune_images = 4, 12
    elif args.json is None:
        args.json = DEFAULT_JSON
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    methods = [METHODS[name] for name in args.methods]
    networks = [load_network_predict(spec) for spec in args.model]
    print(f"tuning on {args.tune_images} crops of the training photos ...", file=sys.stderr)
    chosen = tune_all(methods, args.tune_images)
    if chosen:
        print("tuned (PSNR on the tuning crops):\n" + format_tuning(chosen) + "\n")
    results = {}
    for set_name in args.sets:
        print(f"{set_name}: {args.num_images} crops ...", file=sys.stderr)
        results[set_name] = benchmark_set(SETS[set_name], args.num_images, methods, chosen,
                                          networks)
        print(format_table(set_name, SETS[set_name], results[set_name]) + "\n", flush=True)
    seconds = time.perf_counter() - start
    print(f"K = {args.num_images} crops per set, sigma = 25/255, {cpu_model()}, "
          f"{torch.get_num_threads()} torch thread(s); {seconds:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report(args, methods, chosen, results, seconds),
                                        indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

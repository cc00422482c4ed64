"""An independent held-out check: whole photographs that no training or validation ever saw.

The book reserves matplotlib's sample photograph (``grace_hopper.jpg``, 512x600, a portrait)
for this: it is in no training set and no validation set. This script adds Gaussian noise of
sigma 25/255 with three noise seeds, denoises the whole image, and prints the PSNR of

    noisy input; Gaussian blur of width 1.5 (tuned on crops in denoisers.py) and of the width
    that is best for this very image and noise (chosen on the clean image: an oracle that can
    only favour the blur); non-local means (strength 0.5, tuned in denoisers.py); BM3D (told
    sigma); and every network shipped in scratchnn/pretrained through the course API,
    ``Model(network=...).predict``,

with the mean and spread over the seeds and the seconds per image. Whole-image NL-means uses
skimage's photograph-sized patches (7x7, searched 11 pixels away).

Usage (from the repository root)::

    python benchmarks/held_out.py [--seeds 0 1 2] [--no-bm3d] [--json results/held_out.json]
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib.cbook
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoisers import bm3d_rgb, gaussian_blur, machine  # noqa: E402

from scratchnn import Model  # noqa: E402
from scratchnn.metrics import psnr  # noqa: E402
from scratchnn.shipped import shipped_networks  # noqa: E402

SIGMA = 25 / 255
PHOTO = "grace_hopper.jpg"


def held_out_photo():
    """matplotlib's sample photograph as floats (H, W, 3) in [0, 1]."""
    path = matplotlib.cbook.get_sample_data(PHOTO, asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255


def add_noise(clean, seed):
    """Gaussian noise of sigma 25/255, then rounding and clipping to 8-bit values, as the book's
    data does."""
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0, SIGMA, clean.shape)
    return np.clip(np.round(noisy * 255), 0, 255) / 255


BLUR_WIDTHS = (0.5, 0.625, 0.75, 0.875, 1.0, 1.25, 1.5)


def best_blur(clean):
    """The oracle Gaussian blur: the width of ``BLUR_WIDTHS`` with the best PSNR against the
    clean image, tried on each noisy image."""
    def denoise(image, sigma):
        candidates = [gaussian_blur(image, sigma, width) for width in BLUR_WIDTHS]
        return max(candidates, key=lambda candidate: score(candidate, clean))
    return denoise


def nl_means_photo(image, sigma, strength=0.5):
    from skimage.restoration import denoise_nl_means
    return denoise_nl_means(image, patch_size=7, patch_distance=11, h=strength * sigma,
                            sigma=sigma, fast_mode=True, channel_axis=-1)


def network_method(name):
    """Denoise with the shipped network ``name`` through ``Model().predict`` (0..255 in/out)."""
    model = Model(network=name)
    model.load_pretrained_model()

    def denoise(image, sigma):
        batch = torch.from_numpy(np.round(image * 255)).permute(2, 0, 1)[None].to(torch.uint8)
        return model.predict(batch)[0].permute(1, 2, 0).double().numpy() / 255
    return denoise


def score(denoised, clean):
    """The book's PSNR (images in [0, 1], output clipped)."""
    to_tensor = lambda image: torch.from_numpy(np.clip(image, 0, 1)).permute(2, 0, 1)[None]  # noqa: E731
    return psnr(to_tensor(denoised), to_tensor(clean))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-bm3d", action="store_true", help="skip BM3D (slow)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    clean = held_out_photo()
    methods = {"noisy input": lambda image, sigma: image,
               "Gaussian blur (1.5)": lambda image, sigma: gaussian_blur(image, sigma, 1.5),
               "Gaussian blur (oracle width)": best_blur(clean),
               "non-local means": nl_means_photo}
    if not args.no_bm3d:
        methods["BM3D"] = bm3d_rgb
    methods |= {f"{name} (scratchnn)": network_method(name) for name in shipped_networks()}
    results = {name: {"psnr_db": [], "seconds": []} for name in methods}
    for seed in args.seeds:
        noisy = add_noise(clean, seed)
        for name, method in methods.items():
            start = time.perf_counter()
            denoised = method(noisy, SIGMA)
            results[name]["seconds"].append(time.perf_counter() - start)
            results[name]["psnr_db"].append(score(denoised, clean))
    print(f"{PHOTO} {clean.shape[1]}x{clean.shape[0]}, sigma 25/255, seeds {args.seeds}")
    for name, row in results.items():
        values = row["psnr_db"]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        row |= {"mean_db": statistics.mean(values), "spread_db": spread,
                "mean_seconds": statistics.mean(row["seconds"])}
        print(f"{name:<28}{row['mean_db']:7.2f} dB  (sd {spread:.2f})  "
              f"{row['mean_seconds']:7.2f} s/image")
    if args.json:
        record = {"what": __doc__.split("\n")[0], "photo": PHOTO, "sigma": "25/255",
                  "seeds": args.seeds, "machine": machine(), "results": results,
                  "command": "python benchmarks/held_out.py " + " ".join(argv or sys.argv[1:])}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

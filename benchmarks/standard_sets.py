"""Every denoiser on the standard colour test sets, under the standard protocol of the literature.

The protocol (the one behind the published CBM3D, CDnCNN and FFDNet tables):

* the clean image is read as it is stored (8 bits per channel); additive white Gaussian noise of
  standard deviation sigma (15, 25 or 50, on the 0..255 scale) is added **as floats, not clipped
  and not rounded** (``scratchnn.datasets.protocol_noise``), with one generator seeded once
  (``--noise-seed``, default 0) and drawn image after image in the set's order;
* every denoiser gets that float image; its output is clipped to 0..255 (not rounded); the
  noisy input's own row is scored unclipped, as the papers quote it (20.17 dB at sigma 25);
* PSNR over 0..255 per image, ``10 log10(255^2 / MSE)``, averaged over the set.

Methods (``--methods``):

    noisy      the noisy input itself
    blur       Gaussian blur, its width chosen per sigma on 8 images of the TRAINING set CBSD432
    nlmeans    skimage's non-local means, told sigma, its strength chosen the same way
    cbm3d      bm3d.bm3d_rgb, told sigma (measured here, with its seconds per image)
    NAME=WEIGHTS@SIGMA   a trained network (a weights file, or ``shipped`` for Model()'s
               default), run at the sigma it was trained for; at other sigmas it has no row

The published numbers sit in their own column (``PUBLISHED``, from the FFDNet paper's table,
as reproduced in its authors' repository). Results go to ``--out`` (JSON) after every row, with
the per-image PSNRs and the machine; ``--resume`` keeps the rows already there (CBM3D takes
hours on two cores: the run can be spread over several sessions).

    python -m scratchnn download cbsd68 kodak24 cbsd432    # once
    python benchmarks/standard_sets.py --methods noisy blur nlmeans cbm3d --resume
    python benchmarks/standard_sets.py --methods unet=scratchnn/pretrained/unet.pth@25 --resume
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.denoisers import machine  # noqa: E402
from scratchnn import datasets  # noqa: E402
from scratchnn.inference import run_network  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "standard_sets.json"
SOURCE = ("K. Zhang, W. Zuo, L. Zhang, FFDNet: Toward a Fast and Flexible Solution for CNN-Based "
          "Image Denoising, IEEE TIP 2018, colour table (figs/table2.png of "
          "github.com/cszn/FFDNet)")
PUBLISHED = {  # set -> method -> {sigma: PSNR dB}
    "cbsd68": {"CBM3D": {15: 33.52, 25: 30.71, 50: 27.38},
               "CDnCNN": {15: 33.89, 25: 31.23, 50: 27.92},
               "FFDNet": {15: 33.87, 25: 31.21, 50: 27.96}},
    "kodak24": {"CBM3D": {15: 34.28, 25: 31.68, 50: 28.46},
                "CDnCNN": {15: 34.48, 25: 32.03, 50: 28.85},
                "FFDNet": {15: 34.63, 25: 32.13, 50: 28.98}},
}
TUNING_IMAGES = 8  # the first 8 images of CBSD432 (training set) choose the blur and NLM knobs
BLUR_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
NLM_STRENGTHS = (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


# --- the protocol --------------------------------------------------------------------------------


def psnr_0_255(denoised, clean, clip=True):
    """PSNR (dB) of one float image (3, H, W), clipped to 0..255, against the clean uint8 one.
    ``clip=False`` scores it as it is: the noisy input's row, whose PSNR is then
    20 log10(255 / sigma) up to the luck of the draw, as the papers quote it."""
    denoised = denoised.clamp(0, 255) if clip else denoised
    error = denoised.to(torch.float64) - clean.to(torch.float64)
    return float(10 * torch.log10(255.0 ** 2 / error.pow(2).mean()))


def to_hwc01(image):
    return (image.to(torch.float64) / 255).permute(1, 2, 0).numpy()


def from_hwc01(array):
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1) * 255


# --- the denoisers: (3, H, W) float64 noisy on 0..255 -> (3, H, W) float on 0..255 ------------


def noisy_input(noisy, sigma):
    return noisy


def gaussian_blur(noisy, sigma, width=1.0):
    from skimage.filters import gaussian
    return from_hwc01(gaussian(to_hwc01(noisy), sigma=width, mode="reflect", channel_axis=-1))


def nl_means(noisy, sigma, strength=0.6):
    """skimage's non-local means with its defaults for photographs (7x7 patches searched up to
    11 pixels away), told sigma; ``h = strength * sigma``."""
    from skimage.restoration import denoise_nl_means
    s = sigma / 255
    return from_hwc01(denoise_nl_means(to_hwc01(noisy), h=strength * s, sigma=s,
                                       fast_mode=True, channel_axis=-1))


def cbm3d(noisy, sigma):
    import bm3d
    return from_hwc01(bm3d.bm3d_rgb(to_hwc01(noisy), sigma_psd=sigma / 255))


def network_denoiser(spec):
    """A denoiser from ``WEIGHTS`` (a weights file or checkpoint) or ``shipped``."""
    from scratchnn.files import read_network_weights
    from scratchnn.shipped import best_shipped_network, load_pretrained_state_dict
    from scratchnn.networks import network_from_state_dict
    state = (load_pretrained_state_dict(best_shipped_network()) if spec == "shipped"
             else read_network_weights(spec))
    network = network_from_state_dict(state)

    def denoise(noisy, sigma):
        output = run_network(network, noisy[None].to(torch.float32) / 255, tile=512)
        return output[0].to(torch.float64) * 255
    return denoise


CLASSICAL = {"noisy": (noisy_input, None, ()), "blur": (gaussian_blur, "width", BLUR_WIDTHS),
             "nlmeans": (nl_means, "strength", NLM_STRENGTHS), "cbm3d": (cbm3d, None, ())}


def tune(denoise, knob, grid, sigma):
    """The knob's value that scores best on the tuning images (training set), and the curve."""
    _, clean = datasets.load_standard_set("cbsd432")
    clean = clean[:TUNING_IMAGES]
    noisy = datasets.protocol_noise(clean, sigma, seed=1)
    curve = {value: float(np.mean([psnr_0_255(denoise(n, sigma, **{knob: value}), c)
                                   for n, c in zip(noisy, clean)])) for value in grid}
    return max(curve, key=curve.get), curve


def measure(method, denoise, set_name, sigma, noise_seed, knob=None):
    """One row: per-image PSNRs and seconds of ``denoise`` on a set at one sigma."""
    names, clean = datasets.load_standard_set(set_name)
    noisy = datasets.protocol_noise(clean, sigma, seed=noise_seed)
    per_image, seconds = [], []
    for image, truth in zip(noisy, clean):
        started = time.perf_counter()
        denoised = denoise(image, sigma, **(knob or {}))
        seconds.append(time.perf_counter() - started)
        per_image.append(psnr_0_255(denoised, truth, clip=method != "noisy"))
    return {"set": set_name, "sigma": sigma, "method": method, "machine": machine(),
            "psnr_db": float(np.mean(per_image)), "per_image_db": dict(zip(names, per_image)),
            "seconds_per_image": float(np.mean(seconds)), "knob": knob,
            "noise_seed": noise_seed}


def parse_network(text):
    """``NAME=WEIGHTS@SIGMA`` -> (name, weights, sigma)."""
    try:
        name, rest = text.split("=", 1)
        weights, sigma = rest.rsplit("@", 1)
        return name, weights, float(sigma)
    except ValueError:
        raise SystemExit(f"error: expected a method name or NAME=WEIGHTS@SIGMA, got {text!r}")


def row_key(row):
    return row["set"], row["sigma"], row["method"]


def save(out, rows, started):
    record = {"what": "denoisers on the standard colour test sets, standard protocol (AWGN added "
                      "as unclipped floats, fixed noise seed, output clipped to 0..255, PSNR over "
                      "0..255 per image, averaged)", "published": {"source": SOURCE,
                                                                   "psnr_db": PUBLISHED},
              "machine": machine(), "seconds_this_run": time.perf_counter() - started,
              "rows": rows}
    Path(out).write_text(json.dumps(record, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["cbsd68", "kodak24"],
                        choices=sorted(PUBLISHED))
    parser.add_argument("--sigmas", nargs="+", type=float, default=[15, 25, 50])
    parser.add_argument("--methods", nargs="+", default=["noisy", "blur", "nlmeans", "cbm3d"])
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in --out and skip what they cover")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = json.loads(Path(args.out).read_text())["rows"] if (
        args.resume and Path(args.out).exists()) else []
    done = {row_key(row) for row in rows}
    for method in args.methods:
        if method in CLASSICAL:
            denoise, knob_name, grid = CLASSICAL[method]
            sigmas, name = args.sigmas, method
        else:
            name, weights, trained_sigma = parse_network(method)
            denoise, knob_name = network_denoiser(weights), None
            sigmas = [sigma for sigma in args.sigmas if sigma == trained_sigma]
        for sigma in sigmas:
            knob = None
            if knob_name and any((s, sigma, name) not in done for s in args.sets):
                value, curve = tune(denoise, knob_name, grid, sigma)
                knob = {knob_name: value}
                print(f"{name} sigma {sigma:g}: {knob_name} = {value} (tuning: "
                      + ", ".join(f"{k}: {v:.2f}" for k, v in curve.items()) + ")", flush=True)
            for set_name in args.sets:
                if (set_name, sigma, name) in done:
                    continue
                row = measure(name, denoise, set_name, sigma, args.noise_seed, knob)
                rows.append(row)
                done.add(row_key(row))
                save(args.out, rows, started)
                published = PUBLISHED[set_name].get("CBM3D", {}).get(sigma)
                print(f"{set_name:8s} sigma {sigma:4g} {name:16s} {row['psnr_db']:6.2f} dB  "
                      f"({row['seconds_per_image']:.2f} s/image; published CBM3D "
                      f"{published})", flush=True)
    save(args.out, rows, started)


if __name__ == "__main__":
    main()

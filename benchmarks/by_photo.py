"""PSNR of trained networks photograph by photograph, next to the tuned Gaussian blur.

Why: a mean over a validation set can hide one photograph on which a network fails. This script
splits the two validation sets into their photographs (300 crops of each, seed 0) and measures
the noisy input, the Gaussian blur tuned in ``denoisers.py`` (1.5 pixels) and each network given
on the command line (weights files, e.g. the best epoch of a run). It also reports the mean
colour of the flower's dark blue-green background crops, where Noise2Noise's noisy targets are
biased by clipping near black (chapter 7).

Usage (from the repository root)::

    python benchmarks/by_photo.py NAME=WEIGHTS [NAME=WEIGHTS ...] [--json results/...json]
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoisers import gaussian_blur  # noqa: E402  (the same blur as the baseline table)

from scratchnn.data import VALIDATION_PHOTOS, VARIED_VALIDATION_PHOTOS, make_validation_set  # noqa: E402,E501
from scratchnn.files import read_network_weights  # noqa: E402
from scratchnn.inference import denoise  # noqa: E402
from scratchnn.metrics import psnr_0_255  # noqa: E402
from scratchnn.networks import network_from_state_dict  # noqa: E402

BLUR_WIDTH = 1.5  # chosen by denoisers.py on crops of the training photographs


def blurred(noisy):
    """The tuned Gaussian blur of uint8 crops (N, 3, H, W), floats 0..255 out."""
    images = noisy.permute(0, 2, 3, 1).double().numpy() / 255
    out = [gaussian_blur(image, 25 / 255, width=BLUR_WIDTH) for image in images]
    return torch.from_numpy(__import__("numpy").stack(out)).permute(0, 3, 1, 2) * 255


def background_colours(networks):
    """Mean colour (0..255) of the flower's blue-green background crops: clean, noisy, denoised."""
    noisy, clean = make_validation_set(1000, seed=0)
    colour = clean.float().mean(dim=(2, 3))
    background = colour[:, 1] > colour[:, 0] + 20           # clearly greener than red
    rows = {"clean": clean[background], "noisy": noisy[background]}
    rows |= {name: denoise(network, noisy[background]) for name, network in networks.items()}
    return {name: [round(value, 1) for value in images.float().mean(dim=(0, 2, 3)).tolist()]
            for name, images in rows.items()} | {"crops": int(background.sum())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("networks", nargs="+", help="NAME=WEIGHTS_FILE")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    networks = {spec.split("=", 1)[0]: network_from_state_dict(
        read_network_weights(spec.split("=", 1)[1])) for spec in args.networks}
    results = {"photographs": {}, "background_colours_rgb": background_colours(networks)}
    for photo in VALIDATION_PHOTOS + VARIED_VALIDATION_PHOTOS:
        noisy, clean = make_validation_set(300, seed=0, photos=(photo,))
        row = {"noisy": psnr_0_255(noisy, clean), "blur": psnr_0_255(blurred(noisy), clean)}
        row |= {name: psnr_0_255(denoise(network, noisy), clean)
                for name, network in networks.items()}
        results["photographs"][photo] = {key: round(value, 3) for key, value in row.items()}
        print(f"{photo:<22}" + "".join(f"{key} {value:6.2f}  " for key, value in row.items()))
    print("flower background, mean RGB:", results["background_colours_rgb"])
    if args.json:
        results["command"] = "python benchmarks/by_photo.py " + " ".join(argv or sys.argv[1:])
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

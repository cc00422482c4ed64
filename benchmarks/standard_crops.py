"""Zoomed crops for chapter 11: where our network beats CBM3D most on Kodak24, and where it
loses most.

``benchmarks/standard_sets.py`` keeps every method's PSNR per image. This script reads those rows
(CBM3D and one network, one sigma), picks the image where the network is furthest ahead of CBM3D
and the one where it is furthest behind, re-creates exactly the noisy image the benchmark used
(the same generator, drawn image after image), runs both denoisers on it again, and keeps one
small square crop per image: the one where the two denoisers' squared errors differ most (in the
network's favour for the win, in CBM3D's for the loss). The crops (noisy, CBM3D, ours, clean) are
stored as uint8 in a small ``.npz`` so that the chapter can show them without the data set.

Kodak24 is used because its photographs were released by Eastman Kodak for unrestricted use;
a few 96x96 crops of them may live in the repository.

    python benchmarks/standard_crops.py --network unet-cbsd432 \\
        --weights scratchnn/pretrained/unet-cbsd432.pth
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.standard_sets import DEFAULT_OUT, cbm3d, network_denoiser, psnr_0_255  # noqa: E402
from scratchnn import datasets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def per_image(rows, method, set_name, sigma):
    """``{image: PSNR}`` of one method's row, or an error that says what to run first."""
    for row in rows:
        if (row["method"], row["set"], row["sigma"]) == (method, set_name, sigma):
            return row["per_image_db"]
    raise SystemExit(f"no row for {method} on {set_name} at sigma {sigma:g}: run "
                     f"benchmarks/standard_sets.py first")


def extreme_images(ours, theirs):
    """The image where ours leads by most, and the one where it trails by most (or leads
    least), with the PSNR differences."""
    gap = {name: ours[name] - theirs[name] for name in ours}
    win = max(gap, key=gap.get)
    loss = min(gap, key=gap.get)
    return (win, gap[win]), (loss, gap[loss])


def best_square(advantage, size):
    """Top-left corner of the ``size`` x ``size`` square with the largest sum of ``advantage``
    (an (H, W) map), found with a summed-area table instead of sliding a window."""
    table = torch.nn.functional.pad(advantage.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
            + table[:-size, :-size])
    flat = int(sums.argmax())
    return divmod(flat, sums.shape[1])


def as_uint8(image):
    """(3, H, W) floats on 0..255 -> (H, W, 3) uint8 for display (rounded, clipped)."""
    return image.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="unet-cbsd432", help="the method's name in the rows")
    parser.add_argument("--weights", default=str(ROOT / "scratchnn/pretrained/unet-cbsd432.pth"))
    parser.add_argument("--set", default="kodak24")
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--size", type=int, default=96, help="side of each crop (pixels)")
    parser.add_argument("--results", default=str(DEFAULT_OUT))
    parser.add_argument("--out", default=str(ROOT / "results" / "standard" / "crops.npz"))
    args = parser.parse_args(argv)

    record = json.loads(Path(args.results).read_text())
    ours = per_image(record["rows"], args.network, args.set, args.sigma)
    theirs = per_image(record["rows"], "cbm3d", args.set, args.sigma)
    names, clean = datasets.load_standard_set(args.set)
    noisy = datasets.protocol_noise(clean, args.sigma, seed=record["rows"][0]["noise_seed"])
    network = network_denoiser(args.weights)
    stored, summary = {}, []
    for label, (name, gap) in zip(("win", "loss"), extreme_images(ours, theirs)):
        index = names.index(name)
        by_us, by_cbm3d = network(noisy[index], args.sigma), cbm3d(noisy[index], args.sigma)
        truth = clean[index].to(torch.float64)
        error_ours = (by_us.clamp(0, 255) - truth).pow(2).sum(0)
        error_cbm3d = (by_cbm3d.clamp(0, 255) - truth).pow(2).sum(0)
        advantage = error_cbm3d - error_ours if label == "win" else error_ours - error_cbm3d
        top, left = best_square(advantage, args.size)
        window = (slice(None), slice(top, top + args.size), slice(left, left + args.size))
        for kind, image in (("noisy", noisy[index]), ("cbm3d", by_cbm3d), ("ours", by_us),
                            ("clean", truth)):
            stored[f"{label}_{kind}"] = as_uint8(image[window])
        crop_psnr = {kind: psnr_0_255(image[window], clean[index][window], clip=kind != "noisy")
                     for kind, image in (("noisy", noisy[index]), ("cbm3d", by_cbm3d),
                                         ("ours", by_us))}
        summary.append({"label": label, "image": name, "psnr_gap_db": gap,
                        "whole_image_db": {"ours": ours[name], "cbm3d": theirs[name]},
                        "crop": {"top": top, "left": left, "size": args.size},
                        "crop_psnr_db": crop_psnr})
        print(f"{label}: {name}, ours - CBM3D = {gap:+.2f} dB on the whole image; crop at "
              f"({top}, {left}): " + ", ".join(f"{k} {v:.2f}" for k, v in crop_psnr.items()))
    np.savez_compressed(args.out, summary=json.dumps({
        "what": f"{args.size}x{args.size} crops of {args.set} at sigma {args.sigma:g} (standard "
                f"protocol) where {args.network} beats CBM3D most (win) and trails it most "
                f"(loss); written by benchmarks/standard_crops.py", "crops": summary}), **stored)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

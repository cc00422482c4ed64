"""The U-Net's speed against its fastest torch form, in one run: convolutions, training steps,
inference on a large image, and the machine's matrix-product peak beside them.

Everything is timed in one process, interleaved (the contenders' order shuffled in every round),
after warm-up, and reported as the ratio of medians to the **fastest** torch form of the same
function, the faster of its two memory formats (NCHW and channels-last):

    conv        every 3x3 convolution shape of the U-Net (``bench_conv.py``'s shapes): forward
                and all three gradients, scratchnn's chosen form against ``torch.nn.Conv2d``
    step        the U-Net's training step (zero_grad, forward, MSE, backward, Adam) at several
                batch sizes against its ``torch.nn`` twin with autograd
    inference   one image (default 512x512) through the whole network, scratchnn against the
                twin under ``torch.no_grad()``

with the GFLOP/s of each next to the float32 matrix-product peak measured in the same process,
the CPU's model and vector extensions, and the thresholds of issue 23 (1.3 for a convolution,
1.2 for a step and for inference) checked. ``--json`` keeps the record.

    python benchmarks/bench_unet.py --json benchmarks/results/unet_speed_cpu.json
    python benchmarks/bench_unet.py --quick          # a smoke test, seconds
"""
import argparse
import copy
import datetime
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_conv import QUICK_SHAPES, UNET_SHAPES, interleaved_medians, matmul_peak, time_shape  # noqa: E402,E501
from bench_step import scratchnn_step, timing_arguments, timing_setup, torch_step  # noqa: E402
from scaling import step_flops  # noqa: E402

import scratchnn  # noqa: E402
from scratchnn.inference import run_network  # noqa: E402
from scratchnn.reference import build_reference, copy_weights  # noqa: E402

LIMITS = {"conv": 1.3, "step": 1.2, "inference": 1.2}   # issue 23's thresholds


def twins(device):
    """The U-Net (chapter 9's default) and its torch.nn twin in both memory formats, with the
    same weights."""
    torch.manual_seed(0)
    ours = scratchnn.build_network("unet").to(device=device)
    nchw = copy_weights(ours, build_reference("unet").to(device))
    last = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    return ours, nchw, last


def time_steps(batch, size, device, timer, rounds, warmup):
    """Median seconds of one training step: scratchnn and the twin in both memory formats."""
    ours, nchw, last = twins(device)
    loss = scratchnn.MSE()
    our_optimizer = scratchnn.Adam(ours.param(), lr=1e-3)
    optimizers = {"NCHW": torch.optim.Adam(nchw.parameters(), lr=1e-3),
                  "channels-last": torch.optim.Adam(last.parameters(), lr=1e-3)}
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, size, size, generator=generator).to(device)
    target = torch.rand(batch, 3, size, size, generator=generator).to(device)
    x_last = x.contiguous(memory_format=torch.channels_last)
    target_last = target.contiguous(memory_format=torch.channels_last)

    contenders = {
        "scratchnn": lambda: scratchnn_step(ours, loss, our_optimizer, x, target),
        "torch NCHW": lambda: torch_step(nchw, optimizers["NCHW"], x, target),
        "torch channels-last": lambda: torch_step(last, optimizers["channels-last"], x_last,
                                                  target_last)}
    return interleaved_medians(contenders, timer, rounds, warmup)


def time_inference(size, device, timer, rounds, warmup):
    """Median seconds of one (1, 3, size, size) image through the network, in one piece."""
    ours, nchw, last = twins(device)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2)).to(device)
    image_last = image.contiguous(memory_format=torch.channels_last)

    def theirs(model, inputs):
        with torch.no_grad():
            model(inputs)

    contenders = {"scratchnn": lambda: run_network(ours, image, tile=size),
                  "torch NCHW": lambda: theirs(nchw, image),
                  "torch channels-last": lambda: theirs(last, image_last)}
    with torch.no_grad():
        difference = (run_network(ours, image, tile=size) - nchw(image)).abs().max().item()
    medians = interleaved_medians(contenders, timer, rounds, warmup)
    return medians, difference


def with_anchor(medians):
    """The medians, plus "torch": the faster torch form, and the ratio scratchnn / torch."""
    torch_forms = {name: value for name, value in medians.items() if name.startswith("torch")}
    fastest = min(torch_forms, key=torch_forms.get)
    return {"median_ms": {name: 1000 * value for name, value in medians.items()},
            "anchor": fastest, "ratio": medians["scratchnn"] / medians[fastest]}


def verdict(rows, kind):
    """``(worst ratio, within the limit?)`` over the rows of one kind."""
    worst = max(row["ratio"] for row in rows)
    return worst, worst <= LIMITS[kind]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing_arguments(parser, rounds=9)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--crop", type=int, default=32, help="training crops (default 32)")
    parser.add_argument("--image", type=int, default=512, help="inference image side")
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--json", help="write the record to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.image, args.rounds, args.warmup = [2], 64, 1, 1
    device, timer, info = timing_setup(parser, args)
    peak = matmul_peak(device, timer, 256 if args.quick else 2048)
    print(f"{info['cpu']} ({', '.join(info['cpu_flags']) or 'no flags read'}), {args.threads} "
          f"threads, torch {info['torch']}, device {device.type}"
          + (f" ({info['gpu']})" if "gpu" in info else "")
          + f"; float32 matmul peak {peak:.0f} GFLOP/s")

    convs = []
    for shape in QUICK_SHAPES if args.quick else UNET_SHAPES:
        row = time_shape(shape, device, timer, args.rounds, args.warmup)
        convs.append(row)
        batch, c, o, size = shape
        print(f"conv  {batch}, {c:>2} -> {o:>2}, {size:>2}x{size:<2}  {row['form']:<24} ratio "
              f"{row['ratio']:.2f}  ({row['gflops']['scratchnn']:.0f} vs "
              f"{row['gflops']['torch.nn']:.0f} GFLOP/s; "
              f"{100 * row['gflops']['scratchnn'] / peak:.0f}% of peak)")

    steps = []
    for batch in args.batches:
        row = {"batch": batch, "crop": args.crop} | with_anchor(
            time_steps(batch, args.crop, device, timer, args.rounds, args.warmup))
        flops = step_flops("unet", batch, args.crop)
        row["gflops"] = {name: flops / value * 1e3 / 1e9
                         for name, value in row["median_ms"].items()}
        steps.append(row)
        print(f"step  batch {batch:>3}: scratchnn {row['median_ms']['scratchnn']:.1f} ms, "
              f"{row['anchor']} {row['median_ms'][row['anchor']]:.1f} ms, ratio "
              f"{row['ratio']:.2f}  ({row['gflops']['scratchnn']:.0f} GFLOP/s)")

    medians, difference = time_inference(args.image, device, timer, max(3, args.rounds // 2),
                                         1)
    inference = {"size": args.image, "max_difference": difference} | with_anchor(medians)
    print(f"inference {args.image}x{args.image}: scratchnn "
          f"{inference['median_ms']['scratchnn']:.0f} ms, {inference['anchor']} "
          f"{inference['median_ms'][inference['anchor']]:.0f} ms, ratio {inference['ratio']:.2f}"
          f" (largest output difference {difference:.1e})")

    checks = {"conv": verdict(convs, "conv"), "step": verdict(steps, "step"),
              "inference": verdict([inference], "inference")}
    for kind, (worst, within) in checks.items():
        print(f"{kind:<10} worst ratio {worst:.2f}, limit {LIMITS[kind]}: "
              f"{'met' if within else 'NOT met'}")
    info["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        record = {"what": __doc__.split("\n")[0], "machine": info, "matmul_peak_gflops": peak,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "rounds": args.rounds, "warmup": args.warmup, "limits": LIMITS,
                  "conv": convs, "step": steps, "inference": inference,
                  "met": {kind: within for kind, (_, within) in checks.items()}}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()

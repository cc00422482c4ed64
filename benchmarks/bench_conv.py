"""Convolutions at the U-Net's shapes: scratchnn's fast forms against torch.nn.Conv2d, one shape
at a time, and the machine's matrix-product peak they are all bounded by.

For every shape (batch, in -> out channels, H x W, 3x3 kernel, stride 1, padding 1) it times,
interleaved in one process after warm-up: one forward + backward (input, weight and bias
gradients) of

    scratchnn   ``Conv2d`` as the package runs it (shifted rows when it has >= 16 input
                channels, chapter 8; the input arrives channels-last, as inside a network)
    unfold      the same module with ``fast = False``: the unfold + matmul + fold form of
                chapters 3-4, the "before" of chapter 8
    torch.nn    ``torch.nn.Conv2d`` with autograd (on a CPU, oneDNN's convolution; on a GPU,
                cuDNN's), in both memory formats (NCHW and channels-last); the faster of the
                two is the anchor, the fastest torch form of the same function

and prints the median milliseconds, the ratios scratchnn / torch.nn and unfold / torch.nn, and
the achieved GFLOP/s (2 * multiply-adds of the three products: output, input gradient, weight
gradient) next to the peak of one large float32 matrix product measured in the same process.

With ``--forms`` it also times each of the three forms of the shifted rows (``ROWS_FORMS``: one
product per tap, the wide product, the gathered taps), each forced in turn with the module's
``force_form``, at every shape that runs on shifted rows: the measurements behind the thresholds
of ``rows_form`` that choose between them.

With ``--pieces`` it times instead the forward pass of one product per tap on large and small
maps, its products in one piece and in pieces of several sizes (``shifted_rows.pieces``): the
measurements behind ``PIECE_ROWS`` and ``PIECES_FROM_ROWS``.

Usage (from the repository root)::

    python benchmarks/bench_conv.py [--device cuda] [--threads 2] [--json results.json]
    python benchmarks/bench_conv.py --forms --rounds 15 --json benchmarks/results/conv_cpu.json
    python benchmarks/bench_conv.py --pieces --json benchmarks/results/pieces_cpu.json
    python benchmarks/bench_conv.py --quick          # two small shapes, a smoke test
"""
import argparse
import copy
import datetime
import json
import random
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import timing_arguments, timing_setup  # noqa: E402

from scratchnn import Conv2d  # noqa: E402
from scratchnn.nn import fast  # noqa: E402
from scratchnn.nn.fast import shifted_rows  # noqa: E402
from scratchnn.nn.fast.shifted_rows import ROWS_FORMS, rows_form, rows_layout  # noqa: E402

# (batch, in_channels, out_channels, size): the 3x3 convolutions of the U-Net of chapter 9 (48
# channels, 32x32 crops, batch 32), plus its first and last layers.
UNET_SHAPES = [(32, 3, 48, 32), (32, 48, 48, 32), (32, 96, 48, 32), (32, 48, 3, 32),
               (32, 48, 48, 16), (32, 96, 48, 16), (32, 48, 48, 8), (32, 96, 48, 8),
               (32, 48, 48, 4)]
QUICK_SHAPES = [(4, 16, 16, 8), (4, 3, 16, 8)]
# --pieces: one 512x512 and one 256x256 image (inference), and training batches of 32x32 crops.
PIECE_SHAPES = [(1, 96, 48, 512), (1, 48, 48, 512), (1, 96, 48, 256), (64, 96, 48, 32),
                (16, 96, 48, 32)]
PIECE_SIZES = (2 ** 13, 2 ** 14, 2 ** 15, 2 ** 16)
QUICK_PIECE_SHAPES, QUICK_PIECE_SIZES = [(1, 16, 8, 40)], (2 ** 8,)


def matmul_peak(device, timer, size=2048, rounds=5):
    """GFLOP/s of one large float32 matrix product: the ceiling for every form here."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a.matmul(b)
    times = []
    for _ in range(rounds):
        start = timer.now()
        a.matmul(b)
        times.append(timer.now() - start)
    return 2 * size ** 3 / min(times) / 1e9


def step_flops(batch, in_channels, out_channels, size):
    """Floating-point operations of forward + both gradients: 3 products of 2 * N*H*W*9*C*O."""
    return 3 * 2 * batch * size * size * 9 * in_channels * out_channels


def form_name(module, shape):
    """The form the package runs: "unfold", "patches", or "shifted rows (<rows form>)"."""
    form = fast.conv2d_form(module) or "unfold"
    if form == "shifted rows":
        batch, c, o, size = shape
        layout = rows_layout((batch, c, size, size), (3, 3), (1, 1), (1, 1))
        form += f" ({rows_form(c, o, layout)})"
    return form


def time_shape(shape, device, timer, rounds, warmup, forms=False):
    batch, in_channels, out_channels, size = shape
    torch.manual_seed(0)
    quick = Conv2d(in_channels, out_channels, 3, padding=1).to(device=device)
    plain = Conv2d(in_channels, out_channels, 3, padding=1).to(device=device)
    plain.load_state_dict(quick.state_dict())
    plain.fast = False
    reference = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1).to(device)
    with torch.no_grad():
        reference.weight.copy_(quick.weight)
        reference.bias.copy_(quick.bias)
    # Inside a network the input of a fast convolution lies channels-last in memory.
    x = torch.randn(batch, size, size, in_channels, device=device).permute(0, 3, 1, 2)
    grad = torch.randn(batch, out_channels, size, size, device=device)
    x_leaf = x.detach().contiguous().requires_grad_(True)

    def ours(module):
        with torch.no_grad():
            module.zero_grad()
            module.forward(x)
            module.backward(grad)

    def theirs():
        reference.zero_grad()
        x_leaf.grad = None
        reference(x_leaf).backward(grad)

    # torch's other memory format: oneDNN may run channels-last faster (or slower) than NCHW;
    # the anchor is whichever of the two is faster on this machine.
    reference_last = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    x_last = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad_last = grad.contiguous(memory_format=torch.channels_last)

    def theirs_last():
        reference_last.zero_grad()
        x_last.grad = None
        reference_last(x_last).backward(grad_last)

    def ours_in(form):
        forced = Conv2d(in_channels, out_channels, 3, padding=1).to(device=device)
        forced.load_state_dict(quick.state_dict())
        forced.force_form = form
        return lambda: ours(forced)

    contenders = {"scratchnn": lambda: ours(quick), "unfold": lambda: ours(plain),
                  "torch.nn NCHW": theirs, "torch.nn channels-last": theirs_last}
    medians = interleaved_medians(contenders, timer, rounds, warmup)
    medians["torch.nn"] = min(medians["torch.nn NCHW"], medians["torch.nn channels-last"])
    forced = {}
    if forms and fast.conv2d_form(quick) == "shifted rows":
        # Each form in its own loop against torch.nn, so that a slow form cannot disturb the
        # others (one that allocates a lot leaves the next contender to fault its memory in).
        for form in ROWS_FORMS:
            pair = interleaved_medians({form: ours_in(form), "torch.nn": theirs}, timer, rounds,
                                       warmup)
            forced[form], forced[f"torch.nn ({form} loop)"] = pair[form], pair["torch.nn"]
    with torch.no_grad():
        check = (quick.forward(x) - F.conv2d(x, quick.weight, quick.bias, padding=1)).abs().max()
    flops = step_flops(*shape)
    row = {"shape": list(shape), "form": form_name(quick, shape),
           "median_ms": {name: 1000 * value for name, value in medians.items()},
           "ratio": medians["scratchnn"] / medians["torch.nn"],
           "ratio_unfold": medians["unfold"] / medians["torch.nn"],
           "gflops": {name: flops / value / 1e9 for name, value in medians.items()},
           "max_forward_difference": check.item()}
    if forced:
        row["forced_ms"] = {name: 1000 * value for name, value in forced.items()}
        row["forced_ratio"] = {form: forced[form] / forced[f"torch.nn ({form} loop)"]
                               for form in ROWS_FORMS}
    return row


def time_pieces(shape, sizes, device, timer, rounds, warmup):
    """Median milliseconds of one forward pass of ``Conv2d`` forced to one product per tap, with
    its products in one piece and in pieces of each of ``sizes`` positions, interleaved."""
    batch, c, o, size = shape
    torch.manual_seed(0)
    conv = Conv2d(c, o, 3, padding=1).to(device=device)
    conv.force_form = "per tap"
    x = torch.randn(batch, size, size, c, device=device).permute(0, 3, 1, 2)

    def forward_in_pieces_of(rows):
        def run():
            kept = shifted_rows.PIECE_ROWS, shifted_rows.PIECES_FROM_ROWS
            shifted_rows.PIECE_ROWS, shifted_rows.PIECES_FROM_ROWS = rows, 1
            try:
                conv.forward(x)
            finally:
                shifted_rows.PIECE_ROWS, shifted_rows.PIECES_FROM_ROWS = kept
        return run

    contenders = {"one piece": forward_in_pieces_of(2 ** 62)}
    contenders |= {f"pieces of {rows}": forward_in_pieces_of(rows) for rows in sizes}
    medians = interleaved_medians(contenders, timer, rounds, warmup)
    positions = rows_layout(x.shape, (3, 3), (1, 1), (1, 1)).positions
    package = shifted_rows.pieces(positions)          # what the package's own rule picks
    return {"shape": list(shape), "positions": positions,
            "median_ms": {name: 1000 * value for name, value in medians.items()},
            "fastest": min(medians, key=medians.get),
            "package_runs": "one piece" if len(package) == 1 else f"pieces of {package[0][1]}"}


def main_pieces(args, device, timer, info):
    """``--pieces``: print (and keep with ``--json``) ``time_pieces`` at ``PIECE_SHAPES``."""
    shapes, sizes = ((QUICK_PIECE_SHAPES, QUICK_PIECE_SIZES) if args.quick
                     else (PIECE_SHAPES, PIECE_SIZES))
    print(f"{info['cpu']}, {args.threads} threads: forward pass, one product per tap (ms)")
    rows = []
    for shape in shapes:
        row = time_pieces(shape, sizes, device, timer, 2 if args.quick else args.rounds,
                          1 if args.quick else args.warmup)
        rows.append(row)
        batch, c, o, size = shape
        print(f"{f'{batch}, {c} -> {o}, {size}x{size}':<22}{row['positions']:>8} positions: "
              + ", ".join(f"{name} {ms:.1f}" for name, ms in row["median_ms"].items())
              + f"; fastest: {row['fastest']}; the package runs {row['package_runs']}")
    if args.json:
        record = {"what": "the forward pass in pieces (bench_conv.py --pieces)", "machine": info,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "rounds": args.rounds, "rows": rows}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


def interleaved_medians(contenders, timer, rounds, warmup, seed=0):
    """Median seconds of each contender, run in turn round after round after warm-up rounds.

    The order of the contenders is shuffled in every round, so that none always runs right
    after the same other one (which may leave the caches, or freed memory, in its favour)."""
    times = {name: [] for name in contenders}
    order = random.Random(seed)
    for index in range(warmup + rounds):
        for name in order.sample(list(contenders), len(contenders)):
            run = contenders[name]
            start = timer.now()
            run()
            if index >= warmup:
                times[name].append(timer.now() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing_arguments(parser, rounds=7)
    parser.add_argument("--quick", action="store_true", help="two small shapes (a smoke test)")
    parser.add_argument("--forms", action="store_true",
                        help="also time each form of the shifted rows, forced in turn")
    parser.add_argument("--pieces", action="store_true",
                        help="time the forward pass with its products in pieces instead")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    device, timer, info = timing_setup(parser, args)
    if args.pieces:
        return main_pieces(args, device, timer, info)
    peak = matmul_peak(device, timer, 256 if args.quick else 2048)
    print(f"{info['cpu']}, {args.threads} threads, torch {info['torch']}, device {device.type}"
          + (f" ({info['gpu']})" if "gpu" in info else "")
          + f"; float32 matmul peak {peak:.0f} GFLOP/s")
    print(f"{'batch, C -> O, size':<24}{'form':<25}{'scratchnn':>10}{'unfold':>9}{'torch':>8}"
          f"{'ratio':>8}{'unfold/torch':>14}{'GFLOP/s ours':>14}{'torch':>7}   (ms)")
    results = []
    for shape in QUICK_SHAPES if args.quick else UNET_SHAPES:
        row = time_shape(shape, device, timer, 2 if args.quick else args.rounds,
                         1 if args.quick else args.warmup, forms=args.forms)
        results.append(row)
        ms, gflops = row["median_ms"], row["gflops"]
        batch, c, o, size = shape
        print(f"{f'{batch}, {c} -> {o}, {size}x{size}':<24}{row['form']:<25}"
              f"{ms['scratchnn']:>10.1f}{ms['unfold']:>9.1f}{ms['torch.nn']:>8.1f}"
              f"{row['ratio']:>8.2f}{row['ratio_unfold']:>14.2f}"
              f"{gflops['scratchnn']:>14.0f}{gflops['torch.nn']:>7.0f}")
        if "forced_ms" in row:
            print(" " * 24 + "forced, ms (ratio to torch.nn in its loop): " + ", ".join(
                f"{form} {row['forced_ms'][form]:.1f} ({row['forced_ratio'][form]:.2f})"
                for form in ROWS_FORMS))
    info["load_average_at_end"] = __import__("os").getloadavg()[0]
    if args.json:
        record = {"what": __doc__.split("\n")[0], "machine": info, "matmul_peak_gflops": peak,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "rounds": args.rounds, "warmup": args.warmup, "rows": results}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()

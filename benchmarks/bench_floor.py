"""How fast could a convolution built from matrix products be? The products alone, in three
arrangements, against torch.nn.Conv2d: a floor under the forms made of them, on this machine.

Every fast form in ``scratchnn/nn/fast`` spends most of its time in matrix products; the rest is
copies (padding, gathering) and element-wise passes. This script times the products *alone*,
on buffers made beforehand, so that nothing is copied while the clock runs, in three
arrangements of the same 3x3 convolution (stride 1, padding 1):

    per tap      one product per kernel tap, K = C (the form the package runs on large maps)
    kernel rows  the three taps of a kernel row side by side, K = 3C: each row of a buffer
                 made beforehand holds a pixel and its two right neighbours (the package does
                 not run this one: making that buffer copies the input three times)
    gathered     the nine taps of each output pixel side by side, K = 9C: one product (the
                 package's gathered form without its gather and scatter copies)

and for each pass (forward, input gradient, weight gradient) it keeps the fastest arrangement.
The sum of those three minima is the *floor*: what the products of the fastest mix of these
arrangements take, with no copy, no bias and no element-wise work at all (the per-tap and
kernel-row products still run over the positions in the padding, as the package's do). A form
made of these products, arranged in one of these three ways, cannot beat it; other
arrangements are not measured. Its ratio to the faster of torch's two memory formats (forward
+ backward with autograd, bias included, interleaved in the same process) says how close to
torch such a form can get on this CPU.

Each arrangement's three results are checked against the per-tap ones before timing.

    python benchmarks/bench_floor.py --json benchmarks/results/floor_cpu.json
    python benchmarks/bench_floor.py --quick          # a smoke test, seconds
"""
import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_conv import interleaved_medians, matmul_peak, step_flops  # noqa: E402
from bench_step import timing_arguments, timing_setup, torch_step  # noqa: E402
from bench_unet import twins  # noqa: E402

from scratchnn.nn.fast import shifted_rows  # noqa: E402
from scratchnn.nn.fast.long_sums import long_sum_product  # noqa: E402

# The U-Net's 3x3 convolutions with 48 outputs (batch 32 of 32x32 crops, and every level below:
# each shape of batch 32 here is one layer of the network, once) and the two widest of its
# convolutions on one 512x512 image (inference: the forward pass).
FLOOR_SHAPES = [(32, 48, 48, 32), (32, 96, 48, 32), (32, 48, 48, 16), (32, 96, 48, 16),
                (32, 48, 48, 8), (32, 96, 48, 8), (32, 48, 48, 4), (1, 48, 48, 512),
                (1, 96, 48, 512)]
QUICK_SHAPES = [(2, 16, 16, 8)]
PASSES = ("forward", "input gradient", "weight gradient")
GATHERED_MAX_ENTRIES = 2 ** 26     # the gathered buffer of a 512x512 image: 0.45-0.9 GB


class ConvolutionBuffers:
    """A 3x3 convolution's input, weight and output gradient laid out beforehand for each
    arrangement, with the package's own layout (``shifted_rows.rows_layout``)."""

    def __init__(self, shape, device):
        batch, c, o, size = shape
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, c, size, size, generator=generator).to(device)
        grad = torch.randn(batch, o, size, size, generator=generator).to(device)
        self.weight = torch.randn(o, c, 3, 3, generator=generator).to(device) / (3 * c ** 0.5)
        self.layout = layout = shifted_rows.rows_layout(x.shape, (3, 3), (1, 1), (1, 1))
        self.x, self.grad = x, grad
        self.rows = shifted_rows.to_rows(x, layout)
        self.spread = shifted_rows.spread_gradient(grad, layout)
        self.taps = shifted_rows.stacked_taps(self.weight)                    # (9, C, O)
        m = layout.positions
        self.grad_rows = self.spread[layout.tail:layout.tail + m]
        self.sent_starts = [shifted_rows.sent_back_start(layout, s) for s in layout.offsets]
        # Kernel rows: row r of ``row_triples`` holds rows r, r + 1, r + 2 of the buffer side
        # by side, so one slice of it feeds a whole kernel row (K = 3C) to one product.
        self.row_triples = side_by_side(self.rows, 3)
        self.grad_triples = side_by_side(self.spread, 3)
        # Gathered: the taps of each output pixel side by side (only when that is not huge).
        pixels = batch * size * size
        self.gathered = None
        if pixels * 9 * max(c, o) <= GATHERED_MAX_ENTRIES:
            self.gathered = shifted_rows.gather_taps(self.rows, layout)       # (P, 9C)
            self.grad_pixels = grad.permute(0, 2, 3, 1).reshape(pixels, o)    # (P, O)


def side_by_side(rows, count):
    """(R, C) -> (R - count + 1, count * C): row r holds rows r ... r + count - 1."""
    length = rows.shape[0] - count + 1
    return torch.cat([rows[shift:shift + length] for shift in range(count)], dim=1)


def per_tap(b):
    """The three passes as the package's per-tap form computes them (without its copies)."""
    layout, m = b.layout, b.layout.positions
    c, o = b.taps.shape[1:]
    forward_out = b.rows.new_empty(m, o)
    input_rows = b.rows.new_empty(m, c)
    taps_t = b.taps.transpose(1, 2).contiguous()
    return {
        "forward": lambda: shifted_rows.add_shifted_products(forward_out, b.rows, layout.offsets,
                                                             b.taps),
        "input gradient": lambda: shifted_rows.add_shifted_products(input_rows, b.spread,
                                                                    b.sent_starts, taps_t),
        "weight gradient": lambda: torch.cat([long_sum_product(b.rows[s:s + m], b.grad_rows)
                                              for s in layout.offsets]),
    }


def kernel_rows(b):
    """Three products per pass, one per kernel row, K = 3C (or 3O for the input gradient)."""
    layout, m = b.layout, b.layout.positions
    c, o = b.taps.shape[1:]
    down = layout.steps[0]                                  # rows between two kernel rows
    row_taps = b.taps.reshape(3, 3 * c, o)                  # [tap(i,0); tap(i,1); tap(i,2)]
    # Input row p takes tap (i, j) from the gradient at sent_starts[3i + j] + p, which is
    # sent_starts[3i + 2] + p + (2 - j): a triple from there holds taps j = 2, 1, 0 in turn.
    sent_taps = b.taps.reshape(3, 3, c, o).flip(1).transpose(2, 3).reshape(3, 3 * o, c)
    sent_starts = [b.sent_starts[3 * i + 2] for i in range(3)]
    forward_out = b.rows.new_empty(m, o)
    input_rows = b.rows.new_empty(m, c)

    def forward():
        for i in range(3):
            forward_out.addmm_(b.row_triples[i * down:i * down + m], row_taps[i],
                               beta=0 if i == 0 else 1)
        return forward_out

    def input_gradient():
        for i, start in enumerate(sent_starts):
            input_rows.addmm_(b.grad_triples[start:start + m], sent_taps[i],
                              beta=0 if i == 0 else 1)
        return input_rows

    def weight_gradient():
        return torch.cat([long_sum_product(b.row_triples[i * down:i * down + m], b.grad_rows)
                          for i in range(3)])

    return {"forward": forward, "input gradient": input_gradient,
            "weight gradient": weight_gradient}


def gathered(b):
    """One product per pass on the output pixels only, K = 9C (the input gradient's scatter
    back to the rows, a copy, is left out)."""
    matrix = b.taps.reshape(-1, b.taps.shape[2])            # (9C, O)
    return {"forward": lambda: b.gathered.matmul(matrix),
            "input gradient": lambda: b.grad_pixels.matmul(matrix.t()),
            "weight gradient": lambda: long_sum_product(b.gathered, b.grad_pixels)}


def arrangements(b):
    """The three passes of each arrangement, as functions of no argument, by name (without
    "gathered" where its buffer would be too large)."""
    runs = {"per tap": per_tap(b), "kernel rows": kernel_rows(b)}
    if b.gathered is not None:
        runs["gathered"] = gathered(b)
    return runs


def check_arrangements(b, runs):
    """Every arrangement computes the same three results as the per-tap form (to float32
    rounding): the forward pass and the weight gradient compared whole, the input gradient at
    the input pixels (the gathered one before its scatter: summed back per tap here)."""
    layout, (c, o) = b.layout, b.taps.shape[1:]
    reference = {name: run() for name, run in runs["per tap"].items()}
    for arrangement, passes in runs.items():
        results = {name: run() for name, run in passes.items()}
        if arrangement == "gathered":
            pixels = shifted_rows.images_of(reference["forward"], 0, layout, layout.out_height,
                                            layout.out_width)
            expected_forward = pixels.permute(0, 2, 3, 1).reshape(-1, o)
            scattered = shifted_rows.scatter_taps(results["input gradient"], layout, c)
            results["input gradient"] = scattered[layout.lead:layout.lead + layout.positions]
        else:
            expected_forward = reference["forward"]
        expected = {"forward": expected_forward, "input gradient": reference["input gradient"],
                    "weight gradient": reference["weight gradient"]}
        for name in PASSES:
            got, want = results[name], expected[name]
            if name == "input gradient":        # only the input pixels are gradients
                got = shifted_rows.images_of(got, 0, layout, layout.height, layout.width)
                want = shifted_rows.images_of(want, 0, layout, layout.height, layout.width)
            error = (got - want).abs().max().item()
            scale = want.abs().max().item()
            if error > 1e-4 * max(scale, 1.0):
                raise AssertionError(f"{arrangement}, {name}: differs from per tap by {error}")


def time_floor(shape, device, timer, rounds, warmup):
    """Median milliseconds of each pass in each arrangement and of torch.nn.Conv2d's forward +
    backward, interleaved; the floor and its ratio to torch."""
    b = ConvolutionBuffers(shape, device)
    runs = arrangements(b)
    check_arrangements(b, runs)
    contenders = {f"{arrangement}: {name}": run for arrangement, passes in runs.items()
                  for name, run in passes.items()}
    for memory_format in (torch.contiguous_format, torch.channels_last):
        contenders |= torch_contenders(b, memory_format)
    medians = interleaved_medians(contenders, timer, rounds, warmup)
    ms = {name: 1000 * value for name, value in medians.items()}
    fastest = {name: min(runs, key=lambda a: ms[f"{a}: {name}"]) for name in PASSES}
    floor = sum(ms[f"{fastest[name]}: {name}"] for name in PASSES)
    torch_ms = min(ms["torch.nn NCHW"], ms["torch.nn channels-last"])
    torch_forward = min(ms["torch.nn NCHW forward"], ms["torch.nn channels-last forward"])
    forward_floor = ms[f"{fastest['forward']}: forward"]
    per_tap_ms = sum(ms[f"per tap: {name}"] for name in PASSES)
    return {"shape": list(shape), "median_ms": ms, "fastest": fastest,
            "floor_ms": floor, "torch_ms": torch_ms, "floor_ratio": floor / torch_ms,
            "per_tap_ratio": per_tap_ms / torch_ms,
            "forward_floor_ratio": forward_floor / torch_forward,
            "floor_gflops": step_flops(*shape) / floor / 1e6,
            "torch_gflops": step_flops(*shape) / torch_ms / 1e6}


def torch_contenders(b, memory_format):
    """torch.nn.Conv2d with autograd on the same input and weight: forward + backward, and the
    forward pass alone under ``no_grad`` (what inference runs), in one memory format."""
    name = "torch.nn NCHW" if memory_format == torch.contiguous_format \
        else "torch.nn channels-last"
    o, c = b.weight.shape[:2]
    conv = torch.nn.Conv2d(c, o, 3, padding=1).to(b.x.device)
    with torch.no_grad():
        conv.weight.copy_(b.weight)
    conv = conv.to(memory_format=memory_format)
    x = b.x.contiguous(memory_format=memory_format).requires_grad_(True)
    grad = b.grad.contiguous(memory_format=memory_format)

    def both_passes():
        conv.zero_grad()
        x.grad = None
        conv(x).backward(grad)

    def forward_alone():
        with torch.no_grad():
            conv(x)

    return {name: both_passes, f"{name} forward": forward_alone}


def step_estimate(rows, device, timer, rounds, warmup, batch=32):
    """An estimate of the U-Net's training step if each of its 3x3 convolutions took its floor
    and everything else ran at torch's speed: torch's measured step, minus torch's time for
    those convolutions timed alone (above), plus their floors (medians over the runs). It
    assumes that a convolution takes as long inside the step as alone, and it drops their bias
    work. To compare with issue 23's limit of 1.2 for the step."""
    _, nchw, last = twins(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    target = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in (nchw, last)]
    x_last, target_last = (t.contiguous(memory_format=torch.channels_last) for t in (x, target))
    contenders = {"torch NCHW": lambda: torch_step(nchw, optimizers[0], x, target),
                  "torch channels-last": lambda: torch_step(last, optimizers[1], x_last,
                                                            target_last)}
    step_ms = 1000 * min(interleaved_medians(contenders, timer, rounds, warmup).values())
    layers = [row for row in rows if row["shape"][0] == batch]
    def median_over_runs(key):
        return sum(statistics.median(run[key] for run in row["runs"]) for row in layers)

    torch_convolutions, floors = median_over_runs("torch_ms"), median_over_runs("floor_ms")
    estimate = step_ms - torch_convolutions + floors
    return {"batch": batch, "layers": len(layers), "torch_step_ms": step_ms,
            "torch_convolutions_ms": torch_convolutions, "floors_ms": floors,
            "estimate_ms": estimate, "ratio": estimate / step_ms}


def print_row(row):
    batch, c, o, size = row["shape"]
    print(f"{f'{batch}, {c} -> {o}, {size}x{size}':<22}{row['torch_ms']:>9.2f}"
          f"{row['floor_ms']:>9.2f}{row['floor_ratio']:>12.2f}{row['per_tap_ratio']:>14.2f}"
          f"{row['forward_floor_ratio']:>16.2f}   "
          + ", ".join(row["fastest"][name] for name in PASSES))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    timing_arguments(parser, rounds=9)
    parser.add_argument("--repeats", type=int, default=3,
                        help="measure every shape this many times over (the floor varies between "
                             "runs by a few percent; the record keeps each run and the range)")
    parser.add_argument("--quick", action="store_true", help="one tiny shape (a smoke test)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    device, timer, info = timing_setup(parser, args)
    peak = matmul_peak(device, timer, 256 if args.quick else 2048)
    print(f"{info['cpu']}, {args.threads} threads, torch {info['torch']}; float32 matmul peak "
          f"{peak:.0f} GFLOP/s")
    print(f"{'batch, C -> O, size':<22}{'torch ms':>9}{'floor ms':>9}{'floor/torch':>12}"
          f"{'per tap/torch':>14}{'fwd floor/torch':>16}   fastest arrangement per pass")
    rows = []
    shapes = QUICK_SHAPES if args.quick else FLOOR_SHAPES
    for repeat in range(1 if args.quick else args.repeats):
        for index, shape in enumerate(shapes):
            row = time_floor(shape, device, timer, 2 if args.quick else args.rounds,
                             1 if args.quick else args.warmup)
            print_row(row)
            if repeat == 0:
                rows.append({"shape": list(shape), "runs": []})
            rows[index]["runs"].append(row)
    for row in rows:
        for key in ("floor_ratio", "per_tap_ratio", "forward_floor_ratio"):
            values = [run[key] for run in row["runs"]]
            row[key] = {"min": min(values), "median": statistics.median(values),
                        "max": max(values)}
    if len(rows[0]["runs"]) > 1:
        print("ranges over the runs (floor / torch):")
        for row in rows:
            batch, c, o, size = row["shape"]
            print(f"{f'{batch}, {c} -> {o}, {size}x{size}':<22}"
                  f"{row['floor_ratio']['min']:>6.2f} - {row['floor_ratio']['max']:.2f}")
    step = None
    if not args.quick:
        step = step_estimate(rows, device, timer, args.rounds, args.warmup)
        print(f"U-Net step at batch {step['batch']}: torch {step['torch_step_ms']:.1f} ms; its "
              f"{step['layers']} 3x3 convolutions, timed alone: "
              f"{step['torch_convolutions_ms']:.1f}; with their floors instead "
              f"({step['floors_ms']:.1f} ms) "
              f"{step['estimate_ms']:.1f} ms, {step['ratio']:.2f} times torch's step")
    info["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        record = {"what": __doc__.split("\n")[0], "machine": info, "matmul_peak_gflops": peak,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "rounds": args.rounds, "warmup": args.warmup, "repeats": len(rows[0]["runs"]),
                  "rows": rows, "step_estimate": step}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()

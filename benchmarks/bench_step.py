"""Time one training step of the seed-000 network: scratchnn against torch.nn + autograd.

A training step is: zero the gradients, forward, MSE loss, backward, one SGD step. Both networks
have the same layers and the same weights:

    Conv2d 3->100 k2 s2, ReLU, Conv2d 100->100 k2 s2, ReLU,
    nearest x2 + Conv2d 100->100 k3 p1, ReLU, nearest x2 + Conv2d 100->3 k3 p1, Sigmoid

This is ``scratchnn.networks.seed000_network``. scratchnn builds the two "nearest x2 + convolution"
blocks as ``Upsampling(..., 3, padding=1)``, the same function as ``NearestUpsampling(2)``
followed by ``Conv2d(..., 3, padding=1)`` (chapter 5; chapter 8 shows how it is computed faster);
its twin (``scratchnn.reference``) builds them as ``nn.Upsample(scale_factor=2)`` then
``nn.Conv2d``. Before timing, the benchmark checks that both networks compute the same output.

The two frameworks are timed interleaved in one process (scratchnn step, torch step, scratchnn
step, ...) after warm-up steps, so that a slower or busier moment of the machine hits both; the
reported number is the ratio of the median step times, scratchnn / torch.nn. A per-block profile
then times the forward and backward of every block of both networks (torch.nn: each block's
forward, and its autograd backward, on a detached copy of its input).

Usage (from the repository root)::

    python benchmarks/bench_step.py                          # CPU, 2 threads, batches 64 and 256
    python benchmarks/bench_step.py --device cuda            # on a GPU
    python benchmarks/bench_step.py --json benchmarks/results/cpu.json --label after

``--json`` adds (or replaces) the run called ``--label`` in that file, keeping the other runs, so
one file holds the "before" and "after" measurements and every step in between.

Run it on an otherwise idle machine. When other programs share the cores, an OpenMP thread
that spins while it waits (the default policy) can lose a whole scheduler time slice at every
parallel operation, and the step times swing by several times from one round to the next;
``OMP_WAIT_POLICY=PASSIVE`` steadies them, but then every parallel operation has to wake a
sleeping thread, which costs most the framework with more, smaller operations (chapter 8 shows
both). The machine's load average and the policy are stored with every run.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import scratchnn
from scratchnn.reference import build_reference, copy_weights

def block_name(module):
    """A short description of one block of the network, the same for both frameworks."""
    conv = getattr(module, "conv", module)
    if not hasattr(conv, "kernel_size"):
        return type(module).__name__.lower()
    prefix = "nearest x2 + " if conv is not module else ""
    return (f"{prefix}conv {conv.in_channels}->{conv.out_channels} k{conv.kernel_size[0]} "
            f"s{conv.stride[0]} p{conv.padding[0]}")


def build_scratchnn(device, seed=0):
    """The seed000 network (``scratchnn.networks``), from fixed initial weights."""
    torch.manual_seed(seed)
    return scratchnn.build_network("seed000").to(device=device)


def build_torch(device):
    """Its torch.nn twin (``scratchnn.reference``): the same layers, the same parameter names."""
    return build_reference("seed000").to(device)


def build_transposed(device):
    """The fastest torch form: each "nearest x2 + 3x3 convolution" as one ConvTranspose2d."""
    return build_reference("seed000", upsampling_blocks="transposed").to(device)


def check_same_function(device):
    """The three networks, with the same weights, must give the same output (to float32
    rounding)."""
    scratch = build_scratchnn(device)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)).to(device)
    difference = 0.0
    for twin in (build_torch(device), build_transposed(device)):
        copy_weights(scratch, twin)
        with torch.no_grad():
            difference = max(difference, (scratch.forward(x) - twin(x)).abs().max().item())
    if difference > 1e-4:
        raise SystemExit(f"the two networks differ (max difference {difference:.1e}): "
                         "not the same network")
    return difference


def chosen_device(parser, name):
    """``torch.device(name)``, or a clear command-line error when CUDA is asked for but absent."""
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return torch.device(name)


def timing_arguments(parser, rounds):
    """The options that bench_conv.py, bench_unet.py and bench_floor.py share."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--warmup", type=int, default=2)


def timing_setup(parser, args):
    """What ``timing_arguments`` asked for: the device, a ``Timer`` for it and the machine's
    description, with torch's threads set."""
    device = chosen_device(parser, args.device)
    torch.set_num_threads(args.threads)
    return device, Timer(device), machine(device, args.threads)


class Timer:
    """Wall-clock seconds of a block of code, waiting for the GPU when there is one."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def scratchnn_step(model, loss, optimizer, x, target):
    with torch.no_grad():
        optimizer.zero_grad()
        value = loss.forward(model.forward(x), target)
        model.backward(loss.backward())
        optimizer.step()
    return value


def torch_step(model, optimizer, x, target):
    optimizer.zero_grad()
    value = nn.functional.mse_loss(model(x), target)
    value.backward()
    optimizer.step()
    return value


def time_steps(batch, device, rounds, warmup, lr=1e-3):
    """Median seconds per step of scratchnn and of both torch.nn twins, timed in turn.

    "torch.nn" is the naive twin (``nn.Upsample`` then ``nn.Conv2d``); "ConvTranspose2d" is the
    fastest torch form of the same network (each up-block one transposed convolution), the
    anchor the ratios are quoted against.
    """
    scratch = build_scratchnn(device)
    twins = {"torch.nn": build_torch(device), "ConvTranspose2d": build_transposed(device)}
    for twin in twins.values():
        copy_weights(scratch, twin)
    loss = scratchnn.MSE()
    scratch_optimizer = scratchnn.SGD(scratch.param(), lr=lr)
    optimizers = {name: torch.optim.SGD(twin.parameters(), lr=lr) for name, twin in twins.items()}
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    target = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    timer = Timer(device)
    times = {"scratchnn": [], **{name: [] for name in twins}}
    for index in range(warmup + rounds):
        for name in times:
            start = timer.now()
            if name == "scratchnn":
                scratchnn_step(scratch, loss, scratch_optimizer, x, target)
            else:
                torch_step(twins[name], optimizers[name], x, target)
            if index >= warmup:
                times[name].append(timer.now() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"scratchnn_s": times["scratchnn"], "torch_s": times["torch.nn"],
              "transposed_s": times["ConvTranspose2d"],
              "median_scratchnn_s": medians["scratchnn"], "median_torch_s": medians["torch.nn"],
              "median_transposed_s": medians["ConvTranspose2d"],
              "ratio": medians["scratchnn"] / medians["torch.nn"],
              "ratio_vs_transposed": medians["scratchnn"] / medians["ConvTranspose2d"]}
    # Two more robust views when other programs share the machine: the fastest step of each, and
    # the median over rounds of the ratio of two steps timed one right after the other.
    for key, name in (("", "torch.nn"), ("_vs_transposed", "ConvTranspose2d")):
        pairs = [mine / theirs for mine, theirs in zip(times["scratchnn"], times[name])]
        result["ratio_of_fastest" + key] = min(times["scratchnn"]) / min(times[name])
        result["median_paired_ratio" + key] = statistics.median(pairs)
    return result


def profile_scratchnn(model, x, target, timer):
    """Seconds of each block's forward and backward inside one training step."""
    forward, backward = [], []
    with torch.no_grad():
        model.zero_grad()
        for module in model.modules:
            start = timer.now()
            x = module.forward(x)
            forward.append(timer.now() - start)
        loss = scratchnn.MSE()
        loss.forward(x, target)
        grad = loss.backward()
        for module in reversed(model.modules):
            start = timer.now()
            grad = module.backward(grad)
            backward.append(timer.now() - start)
    return forward, backward[::-1]


def profile_torch(model, x, target, timer):
    """The same for torch.nn: every block runs on a detached copy of its input, so that autograd's
    backward can be timed block by block. The network's input needs no gradient, as in training."""
    model.zero_grad()
    inputs, outputs, forward, backward = [], [], [], []
    for index, module in enumerate(model):
        x = x.detach().requires_grad_(index > 0)
        start = timer.now()
        y = module(x)
        forward.append(timer.now() - start)
        inputs.append(x)
        outputs.append(y)
        x = y
    grad = 2 * (x.detach() - target) / x.numel()  # d MSE / d prediction
    for x, y in zip(reversed(inputs), reversed(outputs)):
        start = timer.now()
        y.backward(grad)
        backward.append(timer.now() - start)
        grad = x.grad
    return forward, backward[::-1]


def profile(batch, device, rounds, warmup):
    """Median forward and backward milliseconds of every block of the three networks."""
    scratch = build_scratchnn(device)
    twins = {"torch": build_torch(device), "transposed": build_transposed(device)}
    for twin in twins.values():
        copy_weights(scratch, twin)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    target = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    timer = Timer(device)
    samples = {f"{name}_{part}": [] for name in ("scratchnn", *twins)
               for part in ("forward", "backward")}
    for index in range(warmup + rounds):
        measured = {"scratchnn": profile_scratchnn(scratch, x, target, timer)}
        measured |= {name: profile_torch(twin, x, target, timer) for name, twin in twins.items()}
        if index >= warmup:
            for name, (forward, backward) in measured.items():
                samples[f"{name}_forward"].append(forward)
                samples[f"{name}_backward"].append(backward)
    rows = []
    for position, block in enumerate(scratch.modules):
        row = {"block": block_name(block)}
        for key, runs in samples.items():
            row[key + "_ms"] = 1000 * statistics.median(run[position] for run in runs)
        rows.append(row)
    return rows


VECTOR_FLAGS = ("fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "asimd",
                "sve")   # what decides how fast a float32 matrix product can run


def cpu_flags():
    """The vector extensions the CPU reports (Linux /proc/cpuinfo), among ``VECTOR_FLAGS``."""
    if not Path("/proc/cpuinfo").exists():
        return []
    for line in open("/proc/cpuinfo"):
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in VECTOR_FLAGS if flag in present]
    return []


def machine(device, threads):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    info = {"cpu": cpu, "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "threads": threads,
            "torch": torch.__version__,
            "device": device.type, "python": platform.python_version(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "load_average_at_start": os.getloadavg()[0]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_profile(rows):
    keys = [f"{name}_{part}_ms" for name in ("scratchnn", "torch", "transposed")
            for part in ("forward", "backward")]
    print(f"{'block':<36}{'scratchnn fwd':>14}{'bwd':>8}{'naive fwd':>11}{'bwd':>8}"
          f"{'ConvT fwd':>11}{'bwd':>8}   (ms)")
    for row in rows + [{"block": "total", **{key: sum(row[key] for row in rows)
                                             for key in keys}}]:
        print(f"{row['block']:<36}" + "".join(f"{row[key]:>{width}.1f}" for key, width in
                                              zip(keys, (14, 8, 11, 8, 11, 8))))


def save(path, label, result):
    """Add the run ``label`` to the JSON file at ``path``, replacing an earlier run of that
    label."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {"runs": []}
    data["runs"] = [run for run in data["runs"] if run["label"] != label] + [result]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=7, help="timed steps of each framework")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--no-profile", action="store_true", help="only the whole-step ratio")
    parser.add_argument("--profile-batches", type=int, nargs="+", default=[64])
    parser.add_argument("--json", metavar="OUT", help="add the results to this JSON file")
    parser.add_argument("--label", default="latest", help="name of this run in the JSON file")
    parser.add_argument("--note", default="", help="what changed, stored with the run")
    args = parser.parse_args()

    device = chosen_device(parser, args.device)
    torch.set_num_threads(args.threads)
    result = {"label": args.label, "note": args.note, "machine": machine(device, args.threads),
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "rounds": args.rounds, "warmup": args.warmup, "steps": {}, "profile": {}}
    info = result["machine"]
    print(f"{info['cpu']}, {args.threads} threads, torch {info['torch']}, device {device.type}"
          + (f" ({info['gpu']})" if "gpu" in info else ""))
    if (device.type == "cpu" and info["load_average_at_start"] > 1
            and info["OMP_WAIT_POLICY"] != "PASSIVE"):
        print(f"warning: load average {info['load_average_at_start']:.1f}: other programs "
              "may be using the CPU. OpenMP threads that spin while waiting then lose whole time "
              "slices at every operation, which hurts the framework with more, smaller "
              "operations most; stop them, or run with OMP_WAIT_POLICY=PASSIVE (steadier, but "
              "slower for small operations)")

    print(f"same network: outputs agree to {check_same_function(device):.1e}")
    for batch in args.batches:
        steps = time_steps(batch, device, args.rounds, args.warmup)
        result["steps"][str(batch)] = steps
        print(f"batch {batch:4d}: scratchnn {steps['median_scratchnn_s']:.3f} s/step, "
              f"ConvTranspose2d twin {steps['median_transposed_s']:.3f} s/step, "
              f"ratio {steps['ratio_vs_transposed']:.2f} "
              f"(fastest {steps['ratio_of_fastest_vs_transposed']:.2f}, "
              f"paired {steps['median_paired_ratio_vs_transposed']:.2f}); "
              f"naive twin {steps['median_torch_s']:.3f} s/step, ratio {steps['ratio']:.2f}")
    if not args.no_profile:
        for batch in args.profile_batches:
            rows = profile(batch, device, max(3, args.rounds // 2), 1)
            result["profile"][str(batch)] = rows
            print(f"\nper-block profile, batch {batch}")
            print_profile(rows)
    result["machine"]["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        save(args.json, args.label, result)
        print(f"\nstored as run {args.label!r} in {args.json}")


if __name__ == "__main__":
    main()

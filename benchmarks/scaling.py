"""Training steps of both networks against their fastest torch.nn twins: every batch size and
thread count, the FLOPs of a step, and the peak memory of a step.

Networks and their anchors (the fastest torch form of the same function):

    seed000   the course network; twin:
              ``build_reference("seed000", upsampling_blocks="transposed")``, each nearest
              x2 + 3x3 convolution as one 4x4 stride-2 ConvTranspose2d
    unet      the U-Net of chapter 9; twin: ``build_reference("unet")`` (Conv2d, MaxPool2d,
              ConvTranspose2d, torch.cat)

A step is zero_grad, forward, MSE, backward, Adam step, on 32x32 crops; the two frameworks
alternate step by step after warm-up, and the ratio is that of the medians. FLOPs count the
multiply-adds of every convolution's three products (the torch twin skips the network input's
gradient; scratchnn computes it, so the count is scratchnn's). Peak memory is measured in a
fresh subprocess per case: on a CPU the growth of the process's peak resident memory (VmHWM)
over three steps, on a GPU ``torch.cuda.max_memory_allocated``.

Usage (from the repository root)::

    python benchmarks/scaling.py [--device cuda] [--json benchmarks/results/scaling_cpu.json]
    python benchmarks/scaling.py --quick        # a smoke test
"""
import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import Timer, chosen_device, machine, scratchnn_step, torch_step  # noqa: E402,E501

import scratchnn  # noqa: E402
from scratchnn.nn import fast  # noqa: E402
from scratchnn.nn.containers import all_modules  # noqa: E402
from scratchnn.reference import build_reference, copy_weights  # noqa: E402

TWINS = {"seed000": dict(upsampling_blocks="transposed"), "unet": {}}


def networks(kind, device):
    torch.manual_seed(0)
    ours = scratchnn.build_network(kind).to(device=device)
    theirs = copy_weights(ours, build_reference(kind, **TWINS[kind]).to(device))
    return ours, theirs


def step_flops(kind, batch, size=32):
    """2 * multiply-adds of forward + input gradient + weight gradient of every convolution.

    To see each convolution's input and output sizes, one forward pass runs with every
    convolution's ``forward`` replaced, on that module only, by a wrapper that counts.
    """
    network = scratchnn.build_network(kind)
    counts = []
    for module in all_modules(network):
        name = type(module).__name__
        if name not in ("Conv2d", "ConvTranspose2d", "Upsampling"):
            continue

        def counting(x, module=module, name=name, original=module.forward):
            out = original(x)
            conv = module.conv if name == "Upsampling" else module
            channels = conv.in_channels * conv.out_channels
            if name == "Conv2d":                 # every output pixel: kh * kw taps
                counts.append(out.shape[2] * out.shape[3] * conv.kernel_size[0]
                              * conv.kernel_size[1] * channels)
            elif name == "ConvTranspose2d":      # every input pixel: kh * kw taps
                counts.append(x.shape[2] * x.shape[3] * conv.kernel_size[0]
                              * conv.kernel_size[1] * channels)
            elif fast.upsampling_form(module):   # 4 phases of 2x2 taps on the padded small map
                counts.append((x.shape[2] + 1) * (x.shape[3] + 1) * 16 * channels)
            return out                           # (an unfused Upsampling's Conv2d counts itself)
        module.forward = counting
    with torch.no_grad():
        network.forward(torch.zeros(1, 3, size, size))
    return 3 * 2 * sum(counts) * batch


def time_case(kind, batch, device, timer, rounds, warmup):
    ours, theirs = networks(kind, device)
    loss = scratchnn.MSE()
    our_optimizer = scratchnn.Adam(ours.param(), lr=1e-3)
    their_optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, 32, 32, generator=generator).to(device)
    target = torch.rand(batch, 3, 32, 32, generator=generator).to(device)

    steps = (("scratchnn", lambda: scratchnn_step(ours, loss, our_optimizer, x, target)),
             ("torch", lambda: torch_step(theirs, their_optimizer, x, target)))
    times = {"scratchnn": [], "torch": []}
    for index in range(warmup + rounds):
        for name, step in steps:
            start = timer.now()
            step()
            if index >= warmup:
                times[name].append(timer.now() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    flops = step_flops(kind, batch)
    return {"network": kind, "batch": batch, "median_s": medians,
            "ratio": medians["scratchnn"] / medians["torch"],
            "gflops": {name: flops / value / 1e9 for name, value in medians.items()},
            "step_gflop": flops / 1e9}


def peak_memory(kind, batch, framework, device, threads):
    """Peak memory growth (MiB) of three training steps, measured in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            f"import scaling; print(scaling.measure_memory({kind!r}, {batch}, {framework!r}, "
            f"{device.type!r}, {threads}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def peak_resident_bytes():
    """The process's peak resident memory. On Linux, VmHWM of /proc/self/status: ``ru_maxrss``
    also remembers the peak of the parent process before ``exec``, which hid every growth."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_memory(kind, batch, framework, device_type, threads):
    """Run in a subprocess by ``peak_memory``: build everything, then measure three steps."""
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    ours, theirs = networks(kind, device)
    x = torch.rand(batch, 3, 32, 32, device=device)
    target = torch.rand(batch, 3, 32, 32, device=device)
    loss = scratchnn.MSE()
    optimizer = (scratchnn.Adam(ours.param(), lr=1e-3) if framework == "scratchnn"
                 else torch.optim.Adam(theirs.parameters(), lr=1e-3))
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = peak_resident_bytes()
    for _ in range(3):
        if framework == "scratchnn":
            scratchnn_step(ours, loss, optimizer, x, target)
        else:
            torch_step(theirs, optimizer, x, target)
    if device.type == "cuda":
        torch.cuda.synchronize()
        after = torch.cuda.max_memory_allocated()
    else:
        after = peak_resident_bytes()
    return (after - before) / 2 ** 20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--networks", nargs="+", default=["seed000", "unet"])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory-batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke test")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.threads, args.memory_batches, args.rounds = [4], [1], [4], 1
    device = chosen_device(parser, args.device)
    timer = Timer(device)
    info = machine(device, max(args.threads))
    print(f"{info['cpu']}, torch {info['torch']}, device {device.type}"
          + (f" ({info['gpu']})" if "gpu" in info else ""))
    steps = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for kind in args.networks:
            for batch in args.batches:
                row = time_case(kind, batch, device, timer, args.rounds, 1)
                row["threads"] = threads
                steps.append(row)
                print(f"{threads} thread(s)  {kind:<8} batch {batch:>4}: scratchnn "
                      f"{1000 * row['median_s']['scratchnn']:8.1f} ms, torch "
                      f"{1000 * row['median_s']['torch']:8.1f} ms, ratio {row['ratio']:.2f}; "
                      f"{row['gflops']['scratchnn']:.0f} vs {row['gflops']['torch']:.0f} "
                      f"GFLOP/s ({row['step_gflop']:.2f} GFLOP per step)")
    memory = []
    for kind in args.networks:
        for batch in args.memory_batches:
            row = {"network": kind, "batch": batch}
            for framework in ("scratchnn", "torch"):
                row[framework + "_mib"] = peak_memory(kind, batch, framework, device,
                                                      max(args.threads))
            memory.append(row)
            print(f"peak memory  {kind:<8} batch {batch:>4}: scratchnn "
                  f"{row['scratchnn_mib']:7.0f} MiB, torch {row['torch_mib']:7.0f} MiB")
    info["load_average_at_end"] = os.getloadavg()[0]
    if args.json:
        record = {"what": __doc__.split("\n")[0], "machine": info,
                  "date": datetime.datetime.now().isoformat(timespec="seconds"),
                  "rounds": args.rounds, "steps": steps, "memory": memory}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()

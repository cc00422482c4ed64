"""Time one training epoch on 1 process and on 2 processes (data parallelism, chapter 10).

What is measured. One epoch of ``scratchnn.train.train_one_epoch`` (forward, backward by hand,
Adam) of the from-scratch seed000 network on ``make_noise2noise_pairs(NUM_PAIRS, seed=0)``,
mini-batches of 32 (the *global* batch: 2 processes take 16 pairs each), on the CPU, in three
configurations, each started fresh:

* ``1x1``: 1 process, 1 thread: the reference;
* ``2x1``: 2 processes (``torchrun --standalone --nproc-per-node 2``, gloo), 1 thread each: the
  same number of cores as ``1x2``, used by processes instead of threads;
* ``1x2``: 1 process, 2 threads (PyTorch's own intra-operation parallelism), for comparison.

For each: the seconds of the epoch (after a few warm-up steps, between two barriers), the
seconds spent inside ``all_reduce_gradients`` (process 0; this includes *waiting* for the other
process to finish its backward pass), and the seconds of the communication alone: the same
bucket all-reduced 50 times while both processes are idle, per call, times the number of steps.
The difference between the two all-reduce times is load imbalance, not communication. The
epoch's training loss is recorded too: every configuration trains the same network (equal up to
the order of floating-point sums).

Configurations are interleaved over ``--rounds`` rounds (1x1, 2x1, 1x2, 1x1, ...) so that a
slower moment of the machine hits all of them, and the median is reported. Run it on an
otherwise idle machine: with other work running, the processes compete for the cores and the
timings say nothing about scaling (``1x2`` suffers most: with OpenMP's default, spinning wait
policy a waiting thread can lose whole time slices; see ``bench_step.py``). The environment,
``OMP_WAIT_POLICY`` included, is passed on to every configuration and recorded.

Usage (from the repository root)::

    python benchmarks/distributed.py          # writes benchmarks/results/distributed.json
    python benchmarks/distributed.py --num-pairs 64 --channels 4 --rounds 1 --json /tmp/d.json

The second line is a quick check that the script works (seconds, not a measurement).
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from scratchnn import build_network, distributed
from scratchnn.data import make_noise2noise_pairs
from scratchnn.files import write_atomically
from scratchnn.steppers import make_stepper
from scratchnn.train import epoch_permutation, train_one_epoch

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = {"1x1": (1, 1), "2x1": (2, 1), "1x2": (1, 2)}  # name: (processes, threads)
WARMUP_STEPS = 3
COMMUNICATION_CALLS = 50


# --- one configuration (runs in each worker process) ---------------------------------------------


class TimedAllReduce:
    """``distributed.all_reduce_gradients``, adding up the seconds spent inside it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, gradients, count):
        started = time.perf_counter()
        distributed.all_reduce_gradients(gradients, count)
        self.seconds += time.perf_counter() - started


def communication_seconds(parameters):
    """Seconds of one all-reduce of a bucket as large as all gradients, processes idle."""
    if distributed.world_size() == 1:
        return 0.0
    bucket = torch.zeros(sum(parameter.numel() for parameter in parameters) + 1)
    dist.all_reduce(bucket)  # warm-up
    distributed.barrier()
    started = time.perf_counter()
    for _ in range(COMMUNICATION_CALLS):
        dist.all_reduce(bucket)
    return (time.perf_counter() - started) / COMMUNICATION_CALLS


def worker(args):
    """Train one epoch in this process (one of ``torchrun``'s, or alone); process 0 prints the
    measurement as one JSON line."""
    torch.set_num_threads(args.threads)
    distributed.start(torch.device("cpu"))
    inputs, targets = make_noise2noise_pairs(args.num_pairs, seed=0)
    torch.manual_seed(0)
    network = build_network("seed000", args.channels)
    timed = TimedAllReduce()
    stepper = make_stepper(network, "adam",
                           reduce_gradients=timed if distributed.world_size() > 1 else None)
    distributed.broadcast_parameters(stepper.parameters())
    order = epoch_permutation(len(inputs), seed=0, epoch=1)
    warmup = order[:WARMUP_STEPS * args.batch_size]
    train_one_epoch(stepper, inputs, targets, warmup, args.batch_size, torch.float32, "", False)
    timed.seconds = 0.0
    distributed.barrier()
    started = time.perf_counter()
    loss = train_one_epoch(stepper, inputs, targets, order, args.batch_size, torch.float32, "",
                           False)
    distributed.barrier()
    seconds = time.perf_counter() - started
    per_call = communication_seconds(stepper.parameters())
    steps = -(-len(order) // args.batch_size)
    if distributed.is_main_process():
        print(json.dumps({
            "processes": distributed.world_size(), "threads": args.threads,
            "epoch_seconds": seconds, "steps": steps, "train_loss": loss,
            "allreduce_seconds": timed.seconds,
            "communication_seconds": per_call * steps,
            "bucket_bytes": 4 * (sum(p.numel() for p in stepper.parameters()) + 1)}))
    distributed.stop()


# --- the driver: every configuration in fresh processes ------------------------------------------


def run_configuration(name, args):
    """Start one configuration and return its measurement (a dict)."""
    processes, threads = CONFIGURATIONS[name]
    script = [str(Path(__file__).resolve()), "--worker", "--threads", str(threads),
              "--num-pairs", str(args.num_pairs), "--channels", str(args.channels),
              "--batch-size", str(args.batch_size)]
    launcher = [sys.executable] if processes == 1 else [
        str(Path(sys.executable).with_name("torchrun")), "--standalone",
        "--nproc-per-node", str(processes)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    result = subprocess.run(launcher + script, env=environment, capture_output=True, text=True,
                            cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(runs):
    """Medians over the rounds, and the speed-up of each configuration over 1x1."""
    summary = {}
    for name, measured in runs.items():
        summary[name] = {key: statistics.median(run[key] for run in measured)
                         for key in ("epoch_seconds", "allreduce_seconds",
                                     "communication_seconds")}
        summary[name]["train_loss"] = measured[0]["train_loss"]
    reference = summary["1x1"]["epoch_seconds"]
    for name, row in summary.items():
        processes, threads = CONFIGURATIONS[name]
        row["speedup"] = reference / row["epoch_seconds"]
        row["efficiency"] = row["speedup"] / (processes * threads)
    return summary


def machine():
    cpu = platform.processor()
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "backend": "gloo",
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(default)"),
            "load_average_at_start": os.getloadavg()[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-pairs", type=int, default=4096)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/distributed.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    info = machine()
    if info["load_average_at_start"] > 0.5:
        print(f"warning: load average {info['load_average_at_start']:.1f}: other programs are "
              f"running, the timings will not say much", file=sys.stderr)
    runs = {name: [] for name in CONFIGURATIONS}
    for round_number in range(1, args.rounds + 1):
        for name in CONFIGURATIONS:
            runs[name].append(run_configuration(name, args))
            print(f"round {round_number}, {name}: {runs[name][-1]['epoch_seconds']:.2f} s",
                  flush=True)
    info["load_average_at_end"] = os.getloadavg()[0]
    result = {"what": "seconds per training epoch of the from-scratch seed000 network, "
                      "1 process vs 2 processes (torchrun, gloo) vs 1 process with 2 threads",
              "command": shlex.join([sys.executable, *sys.argv]),
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": info,
              "config": {"network": "seed000", "channels": args.channels,
                         "num_pairs": args.num_pairs, "batch_size": args.batch_size,
                         "optimizer": "adam", "dtype": "float32", "rounds": args.rounds,
                         "warmup_steps": WARMUP_STEPS},
              "summary": summarise(runs), "runs": runs}
    write_atomically(args.json, json.dumps(result, indent=1).encode())
    for name, row in result["summary"].items():
        print(f"{name}: {row['epoch_seconds']:.2f} s per epoch, speed-up {row['speedup']:.2f}, "
              f"all-reduce {row['allreduce_seconds']:.2f} s "
              f"(communication alone {row['communication_seconds']:.2f} s)")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()

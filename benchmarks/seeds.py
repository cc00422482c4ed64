"""Rerun the book's small CPU comparisons with several seeds: mean, spread, and a noise verdict.

Why. Chapters 6 and 7 compare optimizers, targets and networks from a single training run each.
One run mixes the effect being compared with the luck of that run: the initial weights, the
order of the mini-batches and (in chapter 7) the training crops and their noise. With another
seed a lead of a few tenths of a decibel can shrink or reverse. This script reruns each
comparison with several seeds (0, 1, 2 by default) and reports every number as its per-seed
values, their mean, standard deviation and range, and every comparison with a verdict: is the
difference larger than the run-to-run noise?

What it runs, on the CPU (a few minutes on two cores):

A. Chapter 6, "SGD, momentum and Adam on a small denoiser": the 32-channel seed000 network,
   250 steps with mini-batches of 16 on ``make_noise2noise_pairs(1024, seed=1)``, validated on
   ``make_validation_set(128)``, with six optimizers. As in the chapter, the seed fixes the
   initial weights (``torch.manual_seed``) and the mini-batch order (a ``torch.Generator``);
   the data are the same for every seed. Recorded per optimizer and seed: the final validation
   PSNR, the mean training loss of the last 50 steps, the PSNR every 25 steps, the spread of
   the outputs (a network that paints one flat colour has almost none), and the ranking.
B. Chapter 7's CPU configuration: 32 channels, ``make_noise2noise_pairs(1000, seed=s)``,
   validation ``make_validation_set(200, seed=0)``, 4 epochs of ``scratchnn.train.train``. Here
   the seed fixes the initial weights, the batch order *and* the training crops and their
   noise. Runs: seed000 Noise2Noise (N2N), seed000 Noise2Clean (N2C), seed003 with Adam,
   seed003 with seed report 003's SGD (lr 2.5, batches of 40), and seed000 N2N with twice the
   noise (sigma = 50/255, training and validation). Then a thread check: seed 0 of the SGD
   lr 2.5 run (and, for contrast, of seed000 N2N) trained with 1 thread, 2 threads, and 1
   thread again. Is a run reproducible, and does the number of threads change its result?
   Two threads add some sums in another order, so a run *could* change in the last bits; the
   check also trains once with every initial weight multiplied by 1 + 1e-7, a change of that
   size, to show how far such a rounding difference would carry.

The noise criterion. A comparison "A - B" gets one *paired* difference d_s per seed s (the
same seed gives both runs the same start, batches and data). With n seeds, their mean m, their
sample standard deviation sd (divided by n - 1) and the standard error se = sd / sqrt(n), the
difference is

* **outside run-to-run noise** when every d_s has the same sign AND |m| >= 2 se;
* **inside run-to-run noise** otherwise: the sign flips between seeds, or the mean is smaller
  than twice its own uncertainty.

"A - do nothing" compares a run with the PSNR of the noisy validation images themselves, which
is the same for every seed (the validation set is fixed).

This is a screen, not a significance test. With 3 seeds the two-sided 95% t-test needs
|m| >= 4.30 se; the JSON stores t = m / se and that stricter verdict as well. Three seeds can
show that an effect is *not* robust (a sign that flips); calling a small one robust needs more.

The standard deviation everywhere is the sample one (``statistics.stdev``, n - 1); with a
single seed it is ``null``.

Usage (from the repository root; the machine may be shared, hence ``nice``)::

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/seeds.py              # seeds 0 1 2
    python benchmarks/seeds.py --seeds 0 1 2 3 4 --json /tmp/five_seeds.json
    python benchmarks/seeds.py --part 6                # only chapter 6 (or 7)

The results go to ``benchmarks/results/seeds.json`` with the machine they were measured on.
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from scratchnn import SGD, Adam, build_network
from scratchnn.data import GaussianNoise, make_noise2noise_pairs, make_validation_set, to_float
from scratchnn.metrics import psnr
from scratchnn.settings import TrainSettings
from scratchnn.train import ScratchStepper, TrainingDiverged, train

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "seeds.json"
INSIDE, OUTSIDE = "inside run-to-run noise", "outside run-to-run noise"
SCREEN_FACTOR = 2.0  # |mean| >= 2 standard errors (and one sign) puts a difference outside noise

# --- statistics ----------------------------------------------------------------------------------


def summarize(values):
    """Per-seed values with their mean, sample standard deviation (n - 1), min and max."""
    values = [float(value) for value in values]
    return {"values": values, "n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def t_quantile_975(dof):
    """The two-sided 95% quantile of Student's t with ``dof`` degrees of freedom (4.30 for 2)."""
    from scipy.stats import t  # scipy comes with scikit-image
    return float(t.ppf(0.975, dof))


def noise_verdict(differences):
    """Is the mean of these paired differences outside run-to-run noise? (Module docstring.)"""
    summary = summarize(differences)
    n, mean, std = summary["n"], summary["mean"], summary["std"]
    one_sign = all(d > 0 for d in differences) or all(d < 0 for d in differences)
    if std is None:
        return {**summary, "verdict": "one seed: no spread to compare with"}
    error = std / math.sqrt(n)
    t_value = mean / error if error > 0 else None
    outside = one_sign and abs(mean) >= SCREEN_FACTOR * error
    strict = one_sign and (error == 0 or abs(t_value) >= t_quantile_975(n - 1))
    return {**summary, "standard_error": error, "t": t_value, "one_sign": one_sign,
            "verdict": OUTSIDE if outside else INSIDE, "significant_95": strict}


def compare(a_values, b_values, a_name, b_name):
    """Paired differences a - b (one per seed) and their verdict."""
    differences = [a - b for a, b in zip(a_values, b_values)]
    return {"a": a_name, "b": b_name, **noise_verdict(differences)}


# --- machine -------------------------------------------------------------------------------------


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """What the runs were measured on: their results depend on it in the last digits."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average_at_start": os.getloadavg()[0]}


# --- A. chapter 6: six optimizers, 250 steps -----------------------------------------------------

CH6_OPTIMIZERS = {
    "SGD, lr 0.1": lambda p: SGD(p, lr=0.1),
    "SGD, lr 1": lambda p: SGD(p, lr=1.0),
    "SGD, lr 2.5": lambda p: SGD(p, lr=2.5),
    "SGD, lr 10": lambda p: SGD(p, lr=10.0),
    "SGD, lr 0.25, momentum 0.9": lambda p: SGD(p, lr=0.25, momentum=0.9),
    "Adam, lr 0.001": lambda p: Adam(p, lr=1e-3),
}
CH6_CONFIG = {"num_pairs": 1024, "data_seed": 1, "num_val": 128, "channels": 32, "steps": 250,
              "batch_size": 16, "every": 25}
# The pairs the chapter's text compares (each also against doing nothing).
CH6_COMPARISONS = [("Adam, lr 0.001", "SGD, lr 2.5"),
                   ("Adam, lr 0.001", "SGD, lr 0.25, momentum 0.9"),
                   ("SGD, lr 0.25, momentum 0.9", "SGD, lr 2.5"),
                   ("SGD, lr 2.5", "SGD, lr 1")]


def chapter6_data(num_pairs, data_seed, num_val):
    """The chapter's data, floats in [0, 1]: the same for every seed."""
    inputs, targets, clean = map(to_float, make_noise2noise_pairs(num_pairs, seed=data_seed,
                                                                  return_clean=True))
    val_noisy, val_clean = map(to_float, make_validation_set(num_val))
    return {"inputs": inputs, "targets": targets, "val": (val_noisy, val_clean),
            "noise_floor": ((targets - clean) ** 2).mean().item(),
            "baseline_psnr": psnr(val_noisy, val_clean)}


def minibatches(num_samples, steps, batch_size, seed):
    """The chapter's batches: ``steps`` rows of indices, from shuffles seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / num_samples)
    order = torch.cat([torch.randperm(num_samples, generator=generator) for _ in range(epochs)])
    return order[:steps * batch_size].reshape(steps, batch_size)


def train_and_watch(data, make_optimizer, seed, channels, steps, batch_size, every):
    """Chapter 6's ``train_and_watch`` with the seed as a parameter; returns what it measured."""
    torch.manual_seed(seed)                              # the initial weights
    network = build_network("seed000", channels=channels)
    stepper = ScratchStepper(network, make_optimizer(network.param()))
    val_noisy, val_clean = data["val"]
    losses, curve = [], [(0, psnr(network.forward(val_noisy), val_clean))]
    batches = minibatches(len(data["inputs"]), steps, batch_size, seed)   # the batch order
    for step, chosen in enumerate(batches, 1):
        losses.append(stepper.step(data["inputs"][chosen], data["targets"][chosen]).item())
        if step % every == 0 or step == steps:
            curve.append((step, psnr(network.forward(val_noisy), val_clean)))
    return {"final_psnr": curve[-1][1], "last50_loss": statistics.fmean(losses[-50:]),
            "curve": curve, "output_std": network.forward(val_noisy).std().item()}


def ranking(per_seed_runs, seed):
    """The optimizers from best to worst final PSNR for one seed."""
    return sorted(per_seed_runs, key=lambda label: -per_seed_runs[label][str(seed)]["final_psnr"])


def chapter6_comparisons(runs, baseline):
    """The differences of final PSNR the chapter talks about, and each optimizer - do nothing."""
    final = {label: run["final_psnr"]["values"] for label, run in runs.items()}
    comparisons = {f"{a} - {b}": compare(final[a], final[b], a, b)
                   for a, b in CH6_COMPARISONS if a in final and b in final}
    for label, values in final.items():
        comparisons[f"{label} - do nothing"] = compare(values, [baseline] * len(values),
                                                       label, "do nothing")
    return comparisons


def chapter6_report(per_seed, seeds, data, config):
    """Summaries, rankings and comparisons of chapter 6's runs, ready for JSON."""
    runs = {label: {"per_seed": by_seed,
                    "final_psnr": summarize(r["final_psnr"] for r in by_seed.values()),
                    "last50_loss": summarize(r["last50_loss"] for r in by_seed.values()),
                    "output_std": summarize(r["output_std"] for r in by_seed.values())}
            for label, by_seed in per_seed.items()}
    rankings = {str(seed): ranking(per_seed, seed) for seed in seeds}
    return {"config": config, "baseline_psnr": data["baseline_psnr"],
            "noise_floor": data["noise_floor"], "runs": runs, "ranking": rankings,
            "same_ranking_every_seed": len({tuple(r) for r in rankings.values()}) == 1,
            "comparisons": chapter6_comparisons(runs, data["baseline_psnr"])}


def run_chapter6(seeds, config=CH6_CONFIG, optimizers=CH6_OPTIMIZERS, log=print):
    """Every optimizer for every seed, then the report."""
    data = chapter6_data(config["num_pairs"], config["data_seed"], config["num_val"])
    per_seed = {label: {} for label in optimizers}
    for seed in seeds:
        for label, make_optimizer in optimizers.items():
            started = time.perf_counter()
            result = train_and_watch(data, make_optimizer, seed, config["channels"],
                                     config["steps"], config["batch_size"], config["every"])
            result["seconds"] = time.perf_counter() - started
            per_seed[label][str(seed)] = result
            log(f"  ch6 seed {seed}  {label:<28}{result['final_psnr']:7.2f} dB "
                f"({result['seconds']:.0f} s)")
    return chapter6_report(per_seed, seeds, data, config)


# --- B. chapter 7: targets, networks, optimizers, noise ------------------------------------------

CH7_CONFIG = {"num_pairs": 1000, "num_val": 200, "validation_seed": 0, "epochs": 4,
              "channels": 32}
# Each run: the network, its targets, the noise (sigma on [0, 1]) and the training settings.
CH7_RUNS = {
    "seed000 N2N": {"network": "seed000"},
    "seed000 N2C": {"network": "seed000", "target": "clean"},
    "seed003 Adam": {"network": "seed003"},
    "seed003 SGD lr 2.5 batch 40": {"network": "seed003", "optimizer": "sgd", "lr": 2.5,
                                    "batch_size": 40},
    "seed000 N2N sigma 50": {"network": "seed000", "sigma": 50 / 255},
}
CH7_COMPARISONS = [("seed000 N2N", "seed000 N2C"),
                   ("seed003 Adam", "seed000 N2N"),
                   ("seed003 Adam", "seed003 SGD lr 2.5 batch 40")]
THREAD_CHECK_RUNS = ("seed003 SGD lr 2.5 batch 40", "seed000 N2N")
THREAD_CHECK_THREADS = (1, 2, 1)   # 1 then 1 again: reproducible? 1 against 2: thread-dependent?
NUDGE = 1e-7                       # about one float32 rounding step, relative


def run_spec(spec):
    """A run's description with the chapter's defaults filled in."""
    return {"target": "noisy", "sigma": 25 / 255, "optimizer": "adam", "lr": None,
            "batch_size": 16, **spec}


def chapter7_data(seed, sigma, config, cache):
    """Training pairs (with the clean crops) for ``seed`` and the validation set, cached."""
    key = (seed, sigma)
    if key not in cache:
        noise = GaussianNoise(sigma)
        pairs = make_noise2noise_pairs(config["num_pairs"], seed=seed, noise=noise,
                                       return_clean=True)
        val = make_validation_set(config["num_val"], seed=config["validation_seed"], noise=noise)
        cache[key] = {"pairs": pairs, "val": val}
    return cache[key]


def nudge_weights(network, relative):
    """Multiply every parameter by ``1 + relative``: a change the size of a rounding error."""
    for parameter, _ in network.param():
        parameter.mul_(1 + relative)


def train_chapter7(spec, seed, data, config, nudge=0.0):
    """One run of chapter 7 through the package's ``train``; returns its PSNR curve.

    ``nudge`` (the thread check) scales the initial weights by ``1 + nudge`` before training.
    """
    spec = run_spec(spec)
    settings = TrainSettings(optimizer=spec["optimizer"], lr=spec["lr"], momentum=0.0,
                             batch_size=spec["batch_size"], device="cpu", seed=seed)
    noisy_a, noisy_b, clean = data["pairs"]
    targets = clean if spec["target"] == "clean" else noisy_b
    torch.manual_seed(seed)                              # the initial weights
    network = build_network(spec["network"], config["channels"])
    if nudge:
        nudge_weights(network, nudge)
    try:
        history = train(network, noisy_a, targets, config["epochs"], settings=settings,
                        validation=data["val"], progress=False)
    except TrainingDiverged as error:
        return {"val_psnr": None, "final_psnr": None, "diverged": str(error)}
    return {"val_psnr": history["val_psnr"], "final_psnr": history["val_psnr"][-1],
            "train_loss": history["train_loss"], "baseline_psnr": history["baseline_psnr"],
            "seconds": sum(history["seconds"])}


def summarize_run7(by_seed):
    """Final PSNR and the PSNR of every epoch over the seeds (diverged runs left out)."""
    curves = [r["val_psnr"] for r in by_seed.values() if r["val_psnr"] is not None]
    if not curves:
        return {"per_seed": by_seed, "final_psnr": None, "val_psnr_by_epoch": None}
    baseline = next(r["baseline_psnr"] for r in by_seed.values() if "baseline_psnr" in r)
    return {"per_seed": by_seed, "final_psnr": summarize(curve[-1] for curve in curves),
            "val_psnr_by_epoch": [summarize(epoch) for epoch in zip(*curves)],
            "baseline_psnr": baseline}


def compare_curves(a_run, b_run, a_name, b_name):
    """Paired differences a - b of the final PSNR and of the PSNR at every epoch."""
    seeds = [s for s in a_run["per_seed"] if a_run["per_seed"][s]["val_psnr"] is not None
             and b_run["per_seed"].get(s, {}).get("val_psnr") is not None]
    a_curves = [a_run["per_seed"][s]["val_psnr"] for s in seeds]
    b_curves = [b_run["per_seed"][s]["val_psnr"] for s in seeds]
    by_epoch = [compare(a, b, a_name, b_name) for a, b in zip(zip(*a_curves), zip(*b_curves))]
    return {**by_epoch[-1], "seeds": seeds, "by_epoch": by_epoch}


def gain_comparison(runs, noisier, reference):
    """(PSNR - baseline) of the noisier run against that of the reference run, seed by seed."""
    gains = {name: [psnr_value - runs[name]["baseline_psnr"]
                    for psnr_value in runs[name]["final_psnr"]["values"]]
             for name in (noisier, reference)}
    return compare(gains[noisier], gains[reference], f"{noisier}: gain over do nothing",
                   f"{reference}: gain over do nothing")


def chapter7_comparisons(runs):
    """The differences chapter 7 talks about (each only when both runs are there)."""
    present = [label for label, run in runs.items() if run["final_psnr"] is not None]
    comparisons = {f"{a} - {b}": compare_curves(runs[a], runs[b], a, b)
                   for a, b in CH7_COMPARISONS if a in present and b in present}
    for label in present:
        values = runs[label]["final_psnr"]["values"]
        comparisons[f"{label} - do nothing"] = compare(
            values, [runs[label]["baseline_psnr"]] * len(values), label, "do nothing")
    if {"seed000 N2N sigma 50", "seed000 N2N"} <= set(present):
        comparisons["gain over do nothing: sigma 50 - sigma 25"] = gain_comparison(
            runs, "seed000 N2N sigma 50", "seed000 N2N")
    return comparisons


def with_threads(threads, function, *args):
    """Call ``function(*args)`` with ``threads`` intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(*args), torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def thread_check(label, seed, config, cache, threads=THREAD_CHECK_THREADS, log=print,
                 run_specs=CH7_RUNS):
    """Train one configuration with each thread count in turn; are the curves identical?"""
    spec = run_spec(run_specs[label])
    data = chapter7_data(seed, spec["sigma"], config, cache)
    runs = []
    for count in threads:
        result, actual = with_threads(count, train_chapter7, spec, seed, data, config)
        runs.append({"threads": actual, **result})
        log(f"  thread check  {label:<28} {actual} thread(s): {decibels(result['final_psnr'])}")
    nudged = nudged_run(spec, seed, data, config, runs[0])
    log(f"  thread check  {label:<28} weights x (1 + {NUDGE:g}): "
        f"{decibels(nudged['final_psnr'])}")
    return {"run": label, "seed": seed, "runs": runs, **thread_verdict(runs), "nudged": nudged}


def nudged_run(spec, seed, data, config, reference):
    """The run again with its initial weights nudged by 1e-7: how much would rounding matter?"""
    result, actual = with_threads(reference["threads"], train_chapter7, spec, seed, data,
                                  config, NUDGE)
    finals = (result["final_psnr"], reference["final_psnr"])
    difference = None if None in finals else finals[0] - finals[1]
    return {"relative_nudge": NUDGE, "threads": actual, **result,
            "difference_from_unnudged_db": difference}


def thread_verdict(runs):
    """Same thread count twice: identical? Another thread count: how far apart?"""
    first = runs[0]["val_psnr"] or []
    same = [r for r in runs[1:] if r["threads"] == runs[0]["threads"]]
    other = [r for r in runs[1:] if r["threads"] != runs[0]["threads"]]
    return {"reproducible_with_same_threads": all(r["val_psnr"] == first for r in same),
            "identical_with_other_threads": all(r["val_psnr"] == first for r in other),
            "max_abs_difference_other_threads_db": max(
                (abs(a - b) for r in other for a, b in zip(r["val_psnr"] or [], first)),
                default=None)}


def run_chapter7(seeds, config=CH7_CONFIG, run_specs=CH7_RUNS, thread_runs=THREAD_CHECK_RUNS,
                 thread_counts=THREAD_CHECK_THREADS, log=print):
    """Every run for every seed, the comparisons, then the thread check on the first seed."""
    cache, per_seed = {}, {label: {} for label in run_specs}
    for seed in seeds:
        for label, spec in run_specs.items():
            data = chapter7_data(seed, run_spec(spec)["sigma"], config, cache)
            result = train_chapter7(spec, seed, data, config)
            per_seed[label][str(seed)] = result
            log(f"  ch7 seed {seed}  {label:<28}{decibels(result['final_psnr'], 2):>9} "
                f"({result.get('seconds', 0):.0f} s)")
    runs = {label: summarize_run7(by_seed) for label, by_seed in per_seed.items()}
    checks = [thread_check(label, seeds[0], config, cache, thread_counts, log=log,
                           run_specs=run_specs)
              for label in thread_runs if label in run_specs]
    return {"config": config, "runs": runs, "comparisons": chapter7_comparisons(runs),
            "thread_check": checks}


# --- printing ------------------------------------------------------------------------------------


def decibels(value, digits=4):
    """'24.5123 dB', or 'diverged' for a run that has no PSNR."""
    return "diverged" if value is None else f"{value:.{digits}f} dB"


def plus_minus(summary, digits=2, sign=""):
    """'24.51 ± 0.23' (no spread with one seed); ``sign="+"`` writes '+0.12 ± 0.30'."""
    if summary is None:
        return "diverged"
    spread = "" if summary["std"] is None else f" ± {summary['std']:.{digits}f}"
    return f"{summary['mean']:{sign}.{digits}f}{spread}"


def seed_columns(values, width=8, digits=2, sign=""):
    return "".join(f"{value:>{sign}{width}.{digits}f}" for value in values)


def print_chapter6(report, seeds):
    heads = "".join(f"{'seed ' + str(s):>8}" for s in seeds)
    print(f"\nA. Chapter 6: final validation PSNR (dB) after {report['config']['steps']} steps; "
          f"rank per seed; loss of the last 50 steps")
    print(f"{'optimizer':<28}{heads}{'mean ± std':>15}{'ranks':>8}{'loss, mean ± std':>19}")
    for label, run in report["runs"].items():
        ranks = "/".join(str(report["ranking"][str(s)].index(label) + 1) for s in seeds)
        print(f"{label:<28}{seed_columns(run['final_psnr']['values'])}"
              f"{plus_minus(run['final_psnr']):>15}{ranks:>8}"
              f"{plus_minus(run['last50_loss'], 4):>19}")
    print(f"{'do nothing':<28}{report['baseline_psnr']:>8.2f}   (noise floor of the loss: "
          f"{report['noise_floor']:.4f})")
    print(f"same ranking for every seed: {report['same_ranking_every_seed']}")
    print_comparisons(report["comparisons"], seeds)


def print_comparisons(comparisons, seeds):
    heads = "".join(f"{'s' + str(s):>7}" for s in seeds)
    print(f"\n{'comparison (dB)':<46}{heads}{'mean ± std':>15}  verdict")
    for name, c in comparisons.items():
        verdict = c["verdict"].replace(" run-to-run", "")
        print(f"{name[:45]:<46}{seed_columns(c['values'], 7, 2, '+')}"
              f"{plus_minus(c, sign='+'):>15}  {verdict}")


def print_chapter7(report, seeds):
    heads = "".join(f"{'seed ' + str(s):>8}" for s in seeds)
    epochs = report["config"]["epochs"]
    print(f"\nB. Chapter 7: validation PSNR (dB) after {epochs} epochs")
    print(f"{'run':<28}{heads}{'mean ± std':>15}{'do nothing':>12}")
    for label, run in report["runs"].items():
        if run["final_psnr"] is None:
            print(f"{label:<28}  diverged for every seed")
            continue
        print(f"{label:<28}{seed_columns(run['final_psnr']['values'])}"
              f"{plus_minus(run['final_psnr']):>15}{run['baseline_psnr']:>12.2f}")
    print(f"\n{'PSNR by epoch, mean ± std':<28}" + "".join(f"{e:>13}" for e in range(epochs + 1)))
    for label, run in report["runs"].items():
        if run["val_psnr_by_epoch"] is not None:
            print(f"{label:<28}" + "".join(f"{plus_minus(e):>13}"
                                           for e in run["val_psnr_by_epoch"]))
    print_comparisons(report["comparisons"], seeds)
    print_epoch_comparisons(report["comparisons"])
    print_thread_check(report["thread_check"])


def print_epoch_comparisons(comparisons):
    print(f"\n{'difference by epoch, mean ± std':<46}(* = outside run-to-run noise)")
    for name, c in comparisons.items():
        if "by_epoch" in c:
            cells = "".join(f"{plus_minus(e, sign='+'):>14}{'*' * (e['verdict'] == OUTSIDE):1}"
                            for e in c["by_epoch"][1:])
            print(f"  {name[:60]}\n  {'epochs 1..':<12}{cells}")


def print_thread_check(checks):
    for check in checks:
        largest = check["max_abs_difference_other_threads_db"]
        print(f"\nthread check, {check['run']}, seed {check['seed']}: final PSNR")
        for run in check["runs"]:
            print(f"  {run['threads']} thread(s): {decibels(run['final_psnr'])}")
        print(f"  same threads twice: identical curves {check['reproducible_with_same_threads']}")
        print(f"  other thread count: identical curves {check['identical_with_other_threads']} "
              f"(largest difference at any epoch: {decibels(largest)})")
        nudged = check["nudged"]
        change = nudged["difference_from_unnudged_db"]
        print(f"  initial weights x (1 + {nudged['relative_nudge']:g}): "
              f"{decibels(nudged['final_psnr'])}, a change of "
              f"{'diverged' if change is None else f'{change:+.4f} dB'}")


# --- the script ----------------------------------------------------------------------------------


def run_all(seeds, parts, threads, log=print, options=None):
    """Everything asked for, with the machine and the criterion, as a dictionary for JSON.

    ``options`` maps a part ("6", "7") to keyword arguments of ``run_chapter6`` or
    ``run_chapter7`` (a smaller configuration, fewer runs): the tests use it.
    """
    options = options or {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run_parts(seeds, parts, log, options)
    finally:
        torch.set_num_threads(before)


def run_parts(seeds, parts, log, options):
    started = time.perf_counter()
    results = {"what": "book chapters 6 and 7 rerun with several seeds (benchmarks/seeds.py)",
               "machine": machine(), "seeds": list(seeds),
               "criterion": {"outside": f"all paired differences share one sign and "
                                        f"|mean| >= {SCREEN_FACTOR} * std / sqrt(n)",
                             "inside": "otherwise", "std": "sample (n - 1)",
                             "significant_95": "also |t| >= t_0.975(n - 1): 4.30 for 3 seeds"}}
    if "6" in parts:
        log("chapter 6 ...")
        results["chapter6"] = run_chapter6(seeds, log=log, **options.get("6", {}))
    if "7" in parts:
        log("chapter 7 ...")
        results["chapter7"] = run_chapter7(seeds, log=log, **options.get("7", {}))
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    results["wall_seconds"] = time.perf_counter() - started
    return results


def write_json(results, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--part", choices=["6", "7", "all"], default="all")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for every run but the thread check (default 1, "
                             "as chapter 7 sets on a CPU)")
    parser.add_argument("--json", default=str(RESULTS_FILE))
    args = parser.parse_args(argv)
    parts = ("6", "7") if args.part == "all" else (args.part,)
    results = run_all(args.seeds, parts, args.threads)
    if "chapter6" in results:
        print_chapter6(results["chapter6"], args.seeds)
    if "chapter7" in results:
        print_chapter7(results["chapter7"], args.seeds)
    write_json(results, args.json)
    print(f"\nwall time {results['wall_seconds']:.0f} s; written to {args.json}")


if __name__ == "__main__":
    main()

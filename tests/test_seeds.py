"""Tests for benchmarks/seeds.py, the book's comparisons rerun with several seeds.

The statistics are checked on made-up numbers; the runs on a tiny configuration (2 seeds,
4 channels, a few pairs, 10 steps or 1 epoch), which takes seconds.
"""
import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "seeds.py"
spec = importlib.util.spec_from_file_location("seeds", SCRIPT)
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)

TINY_CH6 = {"num_pairs": 24, "data_seed": 1, "num_val": 8, "channels": 4, "steps": 10,
            "batch_size": 4, "every": 5}
TINY_CH7 = {"num_pairs": 24, "num_val": 8, "validation_seed": 0, "epochs": 1, "channels": 4}
TINY_CH6_OPTIMIZERS = {label: seeds.CH6_OPTIMIZERS[label]
                       for label in ("SGD, lr 2.5", "Adam, lr 0.001")}
TINY_CH7_RUNS = {label: seeds.CH7_RUNS[label]
                 for label in ("seed000 N2N", "seed000 N2C", "seed000 N2N sigma 50")}


def quiet(*args, **kwargs):
    pass


# --- statistics on made-up numbers ---------------------------------------------------------------


def test_summarize_gives_mean_sample_std_min_max():
    summary = seeds.summarize([1.0, 2.0, 6.0])
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(3.0)
    assert summary["std"] == pytest.approx(math.sqrt(((1 - 3) ** 2 + 1 + 9) / 2))  # n - 1
    assert summary["std"] == pytest.approx(statistics.stdev([1, 2, 6]))
    assert (summary["min"], summary["max"]) == (1.0, 6.0)
    assert summary["values"] == [1.0, 2.0, 6.0]


def test_one_value_has_no_spread():
    assert seeds.summarize([4.0])["std"] is None
    assert "one seed" in seeds.noise_verdict([0.3])["verdict"]


def test_a_consistent_difference_is_outside_noise():
    verdict = seeds.noise_verdict([0.50, 0.55, 0.45])
    assert verdict["verdict"] == seeds.OUTSIDE
    assert verdict["one_sign"] and verdict["significant_95"]
    assert verdict["t"] == pytest.approx(0.5 / (0.05 / math.sqrt(3)))


def test_a_difference_that_changes_sign_is_inside_noise():
    verdict = seeds.noise_verdict([0.4, -0.1, 0.3])
    assert verdict["verdict"] == seeds.INSIDE
    assert not verdict["one_sign"] and not verdict["significant_95"]


def test_one_sign_but_a_mean_under_two_standard_errors_is_inside_noise():
    # mean 0.37, std 0.55, se 0.32: one sign, but |mean| < 2 se
    verdict = seeds.noise_verdict([0.01, 0.1, 1.0])
    assert verdict["one_sign"] and verdict["verdict"] == seeds.INSIDE


def test_passing_the_screen_is_weaker_than_the_t_test():
    # mean 1, std 0.5, se 0.29: t = 3.46, over the screen's 2 but under t_0.975(2) = 4.30
    verdict = seeds.noise_verdict([0.5, 1.0, 1.5])
    assert verdict["t"] == pytest.approx(math.sqrt(12))
    assert verdict["verdict"] == seeds.OUTSIDE and not verdict["significant_95"]
    assert seeds.t_quantile_975(2) == pytest.approx(4.303, abs=1e-3)


def test_compare_pairs_the_values_seed_by_seed():
    comparison = seeds.compare([25.0, 24.0], [24.5, 24.2], "a", "b")
    assert comparison["values"] == pytest.approx([0.5, -0.2])
    assert (comparison["a"], comparison["b"]) == ("a", "b")
    assert comparison["verdict"] == seeds.INSIDE


def test_the_thread_verdict_compares_curves():
    runs = [{"threads": 1, "val_psnr": [12.0, 20.0]}, {"threads": 2, "val_psnr": [12.0, 20.5]},
            {"threads": 1, "val_psnr": [12.0, 20.0]}]
    verdict = seeds.thread_verdict(runs)
    assert verdict["reproducible_with_same_threads"]
    assert not verdict["identical_with_other_threads"]
    assert verdict["max_abs_difference_other_threads_db"] == pytest.approx(0.5)


def test_the_minibatches_follow_the_seed_and_cover_every_sample_each_epoch():
    batches = seeds.minibatches(8, steps=4, batch_size=4, seed=0)
    assert batches.shape == (4, 4)
    assert sorted(batches[:2].reshape(-1).tolist()) == list(range(8))
    assert batches.equal(seeds.minibatches(8, 4, 4, seed=0))
    assert not batches.equal(seeds.minibatches(8, 4, 4, seed=1))


# --- a tiny run of both chapters -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    options = {"6": {"config": TINY_CH6, "optimizers": TINY_CH6_OPTIMIZERS},
               "7": {"config": TINY_CH7, "run_specs": TINY_CH7_RUNS,
                     "thread_runs": ("seed000 N2N",), "thread_counts": (1, 2, 1)}}
    results = seeds.run_all([0, 1], ("6", "7"), threads=1, log=quiet, options=options)
    path = tmp_path_factory.mktemp("seeds") / "seeds.json"
    seeds.write_json(results, path)
    return json.loads(path.read_text())


def test_the_json_records_the_machine_and_the_seeds(tiny_results):
    assert tiny_results["seeds"] == [0, 1]
    machine = tiny_results["machine"]
    assert {"cpu", "torch", "torch_threads", "date"} <= set(machine)
    assert machine["torch_threads"] == 1
    assert tiny_results["wall_seconds"] > 0


def test_chapter6_has_every_optimizer_every_seed_and_its_statistics(tiny_results):
    report = tiny_results["chapter6"]
    assert set(report["runs"]) == set(TINY_CH6_OPTIMIZERS)
    for run in report["runs"].values():
        assert set(run["per_seed"]) == {"0", "1"}
        finals = [run["per_seed"][s]["final_psnr"] for s in ("0", "1")]
        assert run["final_psnr"]["values"] == pytest.approx(finals)
        assert run["final_psnr"]["mean"] == pytest.approx(statistics.fmean(finals))
        assert run["final_psnr"]["std"] == pytest.approx(statistics.stdev(finals))
        assert [step for step, _ in run["per_seed"]["0"]["curve"]] == [0, 5, 10]
    assert all(sorted(r) == sorted(TINY_CH6_OPTIMIZERS) for r in report["ranking"].values())
    assert "Adam, lr 0.001 - SGD, lr 2.5" in report["comparisons"]
    assert "SGD, lr 2.5 - do nothing" in report["comparisons"]


def test_chapter6_seeds_change_the_run(tiny_results):
    run = tiny_results["chapter6"]["runs"]["Adam, lr 0.001"]
    assert run["per_seed"]["0"]["final_psnr"] != run["per_seed"]["1"]["final_psnr"]


def test_chapter7_has_curves_comparisons_and_the_thread_check(tiny_results):
    report = tiny_results["chapter7"]
    run = report["runs"]["seed000 N2N"]
    assert len(run["per_seed"]["0"]["val_psnr"]) == TINY_CH7["epochs"] + 1   # epoch 0 too
    assert len(run["val_psnr_by_epoch"]) == TINY_CH7["epochs"] + 1
    comparison = report["comparisons"]["seed000 N2N - seed000 N2C"]
    n2n, n2c = (report["runs"][label]["final_psnr"]["values"]
                for label in ("seed000 N2N", "seed000 N2C"))
    assert comparison["values"] == pytest.approx([a - b for a, b in zip(n2n, n2c)])
    assert comparison["verdict"] in (seeds.INSIDE, seeds.OUTSIDE)
    assert "gain over do nothing: sigma 50 - sigma 25" in report["comparisons"]
    noisier = report["runs"]["seed000 N2N sigma 50"]["baseline_psnr"]
    assert noisier < run["baseline_psnr"] - 4        # twice the noise: about 5 dB lower
    check, = report["thread_check"]
    assert [r["threads"] for r in check["runs"]] == [1, 2, 1]
    assert check["reproducible_with_same_threads"]
    assert check["nudged"]["relative_nudge"] == seeds.NUDGE
    assert len(check["nudged"]["val_psnr"]) == TINY_CH7["epochs"] + 1
    assert check["nudged"]["val_psnr"][0] != check["runs"][0]["val_psnr"][0]   # another start

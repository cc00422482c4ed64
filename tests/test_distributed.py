"""Data-parallel training (``scratchnn.distributed``, chapter 10): two gloo processes on the CPU
train the network one process trains.

* The command line under ``torchrun`` (2 processes), stopped after one epoch and resumed, gives
  the PSNR and the loss of every epoch of a one-process run, up to the order of floating-point
  sums; a checkpoint of 2 processes can be resumed by 1.
* ``train()`` in two processes started by ``torch.multiprocessing.spawn``, in float64, with a
  batch size that 2 does not divide and a last batch of one pair (one process gets nothing):
  the weights of a one-process run to 1e-12, replicas identical bit for bit, and process 1
  writes no file.

Every process uses one CPU thread; the whole file takes well under a minute.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing

from scratchnn import build_network, distributed
from scratchnn.data import FreshPairs, make_crops, make_noise2noise_pairs, make_validation_set
from scratchnn.files import CHECKPOINT_FILE, HISTORY_FILE, RUN_FILES
from scratchnn.reference import build_reference
from scratchnn.settings import TrainSettings
from scratchnn.train import epoch_permutation, train

# torchrun is installed next to python; ``python -m torch.distributed.run`` is the same program.
TORCHRUN = ([str(Path(sys.executable).with_name("torchrun"))]
            if Path(sys.executable).with_name("torchrun").exists()
            else [sys.executable, "-m", "torch.distributed.run"])
TINY_RUN = ["train", "--num-pairs", "48", "--num-val", "16", "--channels", "4",
            "--batch-size", "8", "--seed", "3", "--threads", "1", "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("one_thread")


def command_line(arguments, processes=1):
    """``python -m scratchnn ...``, or the same under ``torchrun`` with several processes."""
    if processes == 1:
        command = [sys.executable, "-m", "scratchnn", *arguments]
    else:
        command = [*TORCHRUN, "--standalone", "--nproc-per-node", str(processes),
                   "-m", "scratchnn", *arguments]
    environment = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def read_history(folder):
    return json.loads((folder / HISTORY_FILE).read_text())


def assert_same_run(history, reference):
    """Equal up to the order of floating-point sums: 1e-4 dB, and 1e-5 relative for losses."""
    assert history["epoch"] == reference["epoch"]
    assert history["baseline_psnr"] == reference["baseline_psnr"]
    assert history["val_psnr"] == pytest.approx(reference["val_psnr"], abs=1e-4)
    assert history["train_loss"][0] is None  # epoch 0: the untrained network
    assert history["train_loss"][1:] == pytest.approx(reference["train_loss"][1:], rel=1e-5)


# --- sharing out the batches ---------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, world_size", [(8, 2), (7, 2), (10, 4), (1, 3)])
def test_shards_hold_every_index_of_a_batch_once_in_nearly_equal_parts(batch_size, world_size):
    batch = torch.randperm(batch_size)
    shards = [distributed.shard(batch, rank, world_size) for rank in range(world_size)]
    assert torch.equal(torch.cat(shards), batch)
    sizes = [len(part) for part in shards]
    assert sum(sizes) == batch_size and max(sizes) - min(sizes) <= 1


def test_shards_of_an_epoch_depend_only_on_seed_and_epoch_and_cover_it_once():
    def shards(seed, epoch):
        order = epoch_permutation(29, seed, epoch)
        return [[distributed.shard(order[start:start + 7], rank, 2) for start in range(0, 29, 7)]
                for rank in range(2)]

    first, again, other = shards(4, 2), shards(4, 2), shards(4, 3)
    flat = torch.cat([part for rank in first for part in rank])
    assert sorted(flat.tolist()) == list(range(29))
    assert all(torch.equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))
    assert not all(torch.equal(a, b) for x, y in zip(first, other) for a, b in zip(x, y))


def test_alone_every_call_is_a_no_op():
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.is_main_process()
    batch, gradient = torch.arange(5), torch.randn(3)
    assert torch.equal(distributed.my_shard(batch), batch)
    total = torch.tensor(2.5)
    assert distributed.sum_over_processes(total) is total
    before = gradient.clone()
    distributed.all_reduce_gradients([gradient], 5)
    distributed.broadcast_parameters([gradient])
    assert torch.equal(gradient, before)


# --- the command line under torchrun ------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 2 epochs; 2 processes for 1 epoch, resumed by 2 processes, and (a copy)
    by 1 process, to 2 epochs."""
    folder = tmp_path_factory.mktemp("runs")
    alone = command_line(TINY_RUN + ["--epochs", "2", "--out", str(folder / "one")])
    first = command_line(TINY_RUN + ["--epochs", "1", "--out", str(folder / "two")], 2)
    shutil.copytree(folder / "two", folder / "two_then_one")
    resumed = command_line(TINY_RUN + ["--epochs", "2", "--out", str(folder / "two"),
                                       "--resume"], 2)
    command_line(TINY_RUN + ["--epochs", "2", "--out", str(folder / "two_then_one"), "--resume"])
    return folder, alone, first, resumed


def test_two_processes_train_the_network_one_process_trains(runs):
    folder, _, first, resumed = runs
    assert_same_run(read_history(folder / "two"), read_history(folder / "one"))
    # only process 0 speaks: one "training ..." line per run
    assert first.count("training scratchnn") == 1 and "2 processes" in first
    assert resumed.count("validation PSNR") == 1


def test_the_checkpoint_records_the_world_size_and_a_resume_may_change_it(runs):
    folder = runs[0]
    config = torch.load(folder / "two" / CHECKPOINT_FILE, weights_only=True)["config"]
    assert config["world_size"] == 2 and config["batch_size"] == 8
    resumed_alone = torch.load(folder / "two_then_one" / CHECKPOINT_FILE, weights_only=True)
    assert resumed_alone["config"]["world_size"] == 1
    assert_same_run(read_history(folder / "two_then_one"), read_history(folder / "one"))


def test_two_processes_leave_only_the_run_files(runs):
    folder = runs[0]
    assert sorted(path.name for path in (folder / "two").iterdir()) == sorted(RUN_FILES)


def test_an_error_under_torchrun_is_our_line_then_torchruns_report_naming_it(tmp_path):
    """Each process meets the bad --lr before any work and exits with code 2; process 0 prints
    the one error line. torchrun then prints its own report of the failed processes (its
    traceback, not ours), whose "Root Cause" is our line."""
    command = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "scratchnn",
               *TINY_RUN, "--lr", "-1", "--out", str(tmp_path / "run")]
    environment = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True,
                            timeout=300)
    line = "error: --lr must be a finite number > 0, got -1"
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[0] == line  # printed once, by process 0, first
    assert f"traceback : {line}" in result.stderr.split("Root Cause")[1]
    assert not (tmp_path / "run").exists()


# --- train() in two spawned processes: uneven shards, an empty shard, the torch twin ------------

NUM_PAIRS, BATCH = 29, 7  # batches of 7, 7, 7, 7 and 1: shards of 4 and 3, then 1 and none


def tiny_data():
    noisy_a, noisy_b = make_noise2noise_pairs(NUM_PAIRS, seed=0)
    return noisy_a, noisy_b, make_validation_set(8)


def train_tiny(framework, out_dir, settings):
    """Two epochs of a 4-channel seed003 network, from the initial weights of seed 0."""
    torch.manual_seed(0)
    network = (build_reference if framework == "torch" else build_network)("seed003", 4)
    noisy_a, noisy_b, validation = tiny_data()
    history = train(network, noisy_a, noisy_b, 2, settings=settings, validation=validation,
                    out_dir=out_dir, progress=False)
    return network.state_dict(), history


SETTINGS = {"scratchnn": TrainSettings(optimizer="sgd", momentum=0.9, batch_size=BATCH,
                                       device="cpu", dtype=torch.float64, seed=1),
            "torch": TrainSettings(optimizer="adam", batch_size=BATCH, device="cpu",
                                   dtype=torch.float64, seed=1)}


def train_fresh_tiny(out_dir):
    """Two epochs of 3 steps on fresh pairs (batch 3: shards of 2 and 1), cosine schedule."""
    torch.manual_seed(0)
    network = build_network("unet", 4, depth=2)
    pairs = FreshPairs(tuple(make_crops(3, seed=0, crop_size=24)), crop_size=16, seed=1)
    settings = TrainSettings(batch_size=3, device="cpu", dtype=torch.float64, seed=1,
                             lr_schedule="cosine")
    history = train(network, pairs, None, 2, settings=settings, validation=make_validation_set(8),
                    out_dir=out_dir, progress=False, steps_per_epoch=3)
    return network.state_dict(), history


def spawned_process(rank, folder, port):
    """One of two processes: join the group as torchrun's processes do, train, save."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    distributed.start(torch.device("cpu"))
    try:
        results = {framework: train_tiny(framework, Path(folder) / f"{framework}{rank}", settings)
                   for framework, settings in SETTINGS.items()}
        results["fresh"] = train_fresh_tiny(Path(folder) / f"fresh{rank}")
    finally:
        distributed.stop()
    torch.save(results, Path(folder) / f"results{rank}.pt")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spawned")
    torch.multiprocessing.spawn(spawned_process, args=(str(folder), free_port()), nprocs=2)
    return folder, [torch.load(folder / f"results{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize("framework", list(SETTINGS))
def test_uneven_and_empty_shards_give_the_one_process_step(spawned, framework, tmp_path):
    _, results = spawned
    weights, history = train_tiny(framework, tmp_path, SETTINGS[framework])
    (weights0, history0), (weights1, history1) = results[0][framework], results[1][framework]
    for name, tensor in weights.items():
        assert torch.allclose(weights0[name], tensor, rtol=0, atol=1e-12), name
        assert torch.equal(weights0[name], weights1[name]), name  # replicas stay identical
    assert history0["val_psnr"] == pytest.approx(history["val_psnr"], abs=1e-9)
    assert history0["train_loss"][1:] == pytest.approx(history["train_loss"][1:], rel=1e-12)
    assert history1["train_loss"] == history0["train_loss"]  # every process sees the same loss
    assert all(value is None for value in history1["val_psnr"])  # only process 0 validates


def test_fresh_pairs_and_a_schedule_give_the_one_process_run(spawned, tmp_path):
    """Every process draws the same fresh global batch and steps on its shard of it."""
    _, results = spawned
    weights, history = train_fresh_tiny(tmp_path)
    (weights0, history0), (weights1, _) = results[0]["fresh"], results[1]["fresh"]
    for name, tensor in weights.items():
        assert torch.allclose(weights0[name], tensor, rtol=0, atol=1e-12), name
        assert torch.equal(weights0[name], weights1[name]), name
    assert history0["train_loss"][1:] == pytest.approx(history["train_loss"][1:], rel=1e-12)


@pytest.mark.parametrize("framework", list(SETTINGS))
def test_only_process_zero_writes_files(spawned, framework):
    folder, _ = spawned
    assert (folder / f"{framework}0" / CHECKPOINT_FILE).exists()
    assert not (folder / f"{framework}1").exists()

"""The training loop and the command line: files, exact resume, divergence, denoising an image
file.

Small networks (8 channels) and a few hundred pairs keep this fast. Runs that are compared number
for number use one CPU thread each, so that they do the same arithmetic in the same order.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import skimage.io
import torch

from scratchnn import build_network
from scratchnn.cli import main
from scratchnn.data import make_noise2noise_pairs, make_validation_set
from scratchnn.reference import build_reference
from scratchnn.files import (BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE, PLOT_FILE,
                             WEIGHTS_FILE)
from scratchnn.settings import TrainSettings
from scratchnn.train import TrainingDiverged, epoch_permutation, train

SMALL_RUN = ["train", "--num-pairs", "256", "--num-val", "64", "--channels", "8",
             "--batch-size", "4", "--epochs", "2", "--seed", "5", "--threads", "1"]
COMPARED_KEYS = ("epoch", "train_loss", "val_psnr", "baseline_psnr")


def run_cli(arguments, **kwargs):
    """Start ``python -m scratchnn ...`` in a subprocess, without progress bars."""
    environment = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "scratchnn", *arguments], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def read_history(folder):
    return json.loads((folder / HISTORY_FILE).read_text())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_data():
    noisy_a, noisy_b = make_noise2noise_pairs(64, seed=0)
    val_noisy, val_clean = make_validation_set(32)
    return noisy_a, noisy_b, val_noisy, val_clean


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A complete two-epoch run of the command line, the reference for the other tests."""
    folder = tmp_path_factory.mktemp("finished")
    process = run_cli(SMALL_RUN + ["--out", str(folder)])
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return folder, stdout


# --- the command line ----------------------------------------------------------------------------

def test_cli_run_writes_history_plot_checkpoint_and_raises_psnr(finished_run):
    folder, stdout = finished_run
    history = read_history(folder)
    assert history["epoch"] == [0, 1, 2]
    assert history["val_psnr"][2] > history["val_psnr"][0]
    assert all(math.isfinite(loss) for loss in history["train_loss"][1:])
    assert (folder / PLOT_FILE).read_bytes().startswith(b"\x89PNG")
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["history"]["val_psnr"] == history["val_psnr"]
    # Adam's state is saved too
    assert set(checkpoint["optimizer"]) >= {"steps", "means", "squares"}
    assert set(torch.load(folder / WEIGHTS_FILE, weights_only=True)) == set(checkpoint["network"])
    best = torch.load(folder / BEST_WEIGHTS_FILE, weights_only=True)
    assert set(best) == set(checkpoint["network"]) and history["best_epoch"] == 2
    assert (set(history["other_val_psnr"]) == {"varied"}
            and len(history["other_val_psnr"]["varied"]) == 3)
    assert "validation PSNR" in stdout


def test_resume_after_a_kill_loses_nothing_and_matches_an_uninterrupted_run(
        finished_run, tmp_path):
    folder = tmp_path / "killed"
    process = run_cli(SMALL_RUN + ["--out", str(folder)])
    deadline = time.monotonic() + 240
    while not ((folder / HISTORY_FILE).exists() and 1 in read_history(folder)["epoch"]):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.communicate()
    saved = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    assert saved["epoch"] >= 1
    completed = saved["history"]

    assert main(SMALL_RUN + ["--out", str(folder), "--resume"]) == 0
    resumed, uninterrupted = read_history(folder), read_history(finished_run[0])
    assert all(resumed[key][:len(completed[key])] == completed[key]
               for key in ("epoch", "train_loss", "val_psnr"))
    assert ({key: resumed[key] for key in COMPARED_KEYS}
            == {key: uninterrupted[key] for key in COMPARED_KEYS})


def test_resume_refuses_a_different_run(finished_run, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / CHECKPOINT_FILE).write_bytes((finished_run[0] / CHECKPOINT_FILE).read_bytes())
    with pytest.raises(SystemExit, match="2"):
        main([*SMALL_RUN[:-2], "--lr", "0.5", "--epochs", "3", "--out", str(folder), "--resume"])


def test_cli_reports_divergence_and_exits_with_1(tmp_path, capsys):
    arguments = [*SMALL_RUN[:-2], "--optimizer", "sgd", "--lr", "1e38", "--out", str(tmp_path)]
    assert main(arguments) == 1
    assert "diverged" in capsys.readouterr().err


def test_cli_trains_the_torch_twin_of_seed003_on_clean_targets(tmp_path):
    arguments = ["train", "--num-pairs", "32", "--num-val", "16", "--epochs", "1",
                 "--network", "seed003", "--channels", "4", "--framework", "torch",
                 "--clean-targets", "--optimizer", "sgd", "--momentum", "0.9",
                 "--out", str(tmp_path)]
    assert main(arguments) == 0
    saved = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert saved["config"]["framework"] == "torch" and saved["config"]["clean_targets"]
    assert "6.conv.weight" in saved["network"] and read_history(tmp_path)["epoch"] == [0, 1]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit, match="0"):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--train-file", "--val-file", "--noise", "--num-pairs",
                   "--num-val", "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum",
                   "--device", "--seed", "--out", "--resume", "--network", "--channels",
                   "--framework", "--clean-targets", "--augment", "--overwrite", "--recolour"):
        assert option in text


# --- the training loop in-process ----------------------------------------------------------------

def test_divergence_raises_and_keeps_the_last_good_checkpoint(small_data, tmp_path):
    noisy_a, noisy_b, val_noisy, val_clean = small_data
    torch.manual_seed(0)
    settings = TrainSettings(optimizer="sgd", lr=1e38, batch_size=8, device="cpu")
    with pytest.raises(TrainingDiverged,
                       match="diverged in epoch 1.*learning rate.*too large.*checkpoint"):
        train(build_network("seed000", 8), noisy_a, noisy_b, 3, validation=(val_noisy, val_clean),
              settings=settings, out_dir=tmp_path, progress=False)
    kept = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert kept["epoch"] == 0 and all(torch.isfinite(t).all() for t in kept["network"].values())


@pytest.mark.parametrize("framework, optimizer, momentum",
                         [("scratchnn", "sgd", 0.9), ("scratchnn", "adam", 0.0),
                          ("torch", "adam", 0.0)])
def test_resuming_in_process_is_exact(small_data, tmp_path, framework, optimizer, momentum):
    """Two epochs at once, or one epoch then a resumed second: the same weights, bit for bit."""
    noisy_a, noisy_b, val_noisy, val_clean = small_data
    build = build_reference if framework == "torch" else build_network
    settings = dict(validation=(val_noisy, val_clean), progress=False,
                    settings=TrainSettings(optimizer=optimizer, momentum=momentum, batch_size=8,
                                           device="cpu", seed=2))
    torch.manual_seed(0)
    straight = build("seed003", 4)
    train(straight, noisy_a, noisy_b, 2, out_dir=tmp_path / "straight", **settings)
    torch.manual_seed(0)
    train(build("seed003", 4), noisy_a, noisy_b, 1, out_dir=tmp_path / "split", **settings)
    resumed = build("seed003", 4)  # different initial weights: the checkpoint must overwrite them
    history = train(resumed, noisy_a, noisy_b, 2, out_dir=tmp_path / "split", resume=True,
                    **settings)
    assert all(torch.equal(straight.state_dict()[name], tensor)
               for name, tensor in resumed.state_dict().items())
    assert history["val_psnr"] == read_history(tmp_path / "straight")["val_psnr"]


def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_permutation(50, 3, 7), epoch_permutation(50, 3, 7))
    assert not torch.equal(epoch_permutation(50, 3, 7), epoch_permutation(50, 3, 8))
    assert sorted(epoch_permutation(50, 3, 7).tolist()) == list(range(50))


def test_callbacks_see_every_epoch(small_data):
    noisy_a, noisy_b, _, _ = small_data
    seen = []
    train(build_network("seed000", 4), noisy_a, noisy_b, 2,
          settings=TrainSettings(device="cpu"), progress=False,
          callbacks=[lambda epoch, history: seen.append((epoch, len(history["epoch"])))])
    assert seen == [(1, 2), (2, 3)]


# --- denoising an image file ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(37, 23, 3), (19, 30), (21, 17, 4)])
def test_denoise_an_odd_sized_png(tmp_path, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    skimage.io.imsave(tmp_path / "in.png", image, check_contrast=False)
    assert main(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png")]) == 0
    out = skimage.io.imread(tmp_path / "out.png")
    assert out.shape == shape and out.dtype == np.uint8
    if len(shape) == 3 and shape[2] == 4:
        assert np.array_equal(out[:, :, 3], image[:, :, 3])  # alpha is kept as it was


def test_denoise_with_weights_from_a_checkpoint(finished_run, tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    skimage.io.imsave(tmp_path / "in.png", image, check_contrast=False)
    weights = finished_run[0] / CHECKPOINT_FILE
    assert main(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                 "--weights", str(weights)]) == 0
    assert skimage.io.imread(tmp_path / "out.png").shape == (13, 29, 3)

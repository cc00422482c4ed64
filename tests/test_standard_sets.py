"""Standard data sets, fresh pairs, learning-rate schedules and the deeper U-Net.

Nothing here downloads: the registry is replaced by one of small images made in the test, and
``pooch.retrieve`` by a function that copies them (it checks the same sha256 pooch would).
"""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scratchnn import build_network, datasets
from scratchnn.cli import main
from scratchnn.data import FreshPairs, GaussianNoise
from scratchnn.inference import run_network
from scratchnn.networks import network_from_state_dict
from scratchnn.reference import build_reference, copy_weights
from scratchnn.settings import TrainSettings
from scratchnn.optimizers import scheduled_learning_rate
from scratchnn.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def write_images(folder, count, size=(40, 48), suffix=".png", seed=0):
    """``count`` random RGB images written to ``folder``; returns {file name: sha256}."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    digests = {}
    for index in range(count):
        name = f"image{index:02d}{suffix}"
        pixels = generator.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        digests[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return digests


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """A registry of two small sets whose files lie in ``tmp_path/source``, and an empty
    cache in ``tmp_path/cache`` (``$SCRATCHNN_DATA``)."""
    source = tmp_path / "source"
    entries = {
        "trainset": {"repository": "someone/somewhere", "commit": "0" * 40, "folder": "train",
                     "files": write_images(source / "train", 3)},
        "testset": {"repository": "someone/somewhere", "commit": "0" * 40, "folder": "test",
                    "files": write_images(source / "test", 2, size=(32, 32), seed=1)},
    }
    monkeypatch.setattr(datasets, "registry", lambda: entries)
    monkeypatch.setenv(datasets.CACHE_VARIABLE, str(tmp_path / "cache"))
    return source, entries


def test_the_registry_pins_a_commit_and_a_checksum_for_every_file():
    entries = datasets.registry()
    assert set(entries) == {"cbsd432", "cbsd68", "kodak24"}
    assert [len(entries[name]["files"]) for name in ("cbsd432", "cbsd68", "kodak24")] == \
        [432, 68, 24]
    for entry in entries.values():
        assert len(entry["commit"]) == 40 and int(entry["commit"], 16) >= 0
        assert all(len(digest) == 64 for digest in entry["files"].values())
    url = datasets.file_urls("kodak24")["kodim01.png"]
    assert entries["kodak24"]["commit"] in url and url.endswith("/testsets/Kodak24/kodim01.png")


def test_a_missing_set_says_the_command_to_run(tiny_registry):
    with pytest.raises(ValueError, match=r"python -m scratchnn download testset"):
        datasets.load_standard_set("testset")
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        datasets.load_standard_set("nope")


def test_install_from_a_local_copy_checks_every_file(tiny_registry, tmp_path):
    source, entries = tiny_registry
    folder = datasets.install_from("trainset", source)  # found in a sub-folder by name
    names, images = datasets.load_standard_set("trainset")
    assert names == sorted(entries["trainset"]["files"])
    assert [tuple(image.shape) for image in images] == [(3, 40, 48)] * 3
    assert images[0].dtype == torch.uint8
    assert datasets.missing_or_damaged("trainset") == []
    (folder / names[0]).write_bytes(b"damaged")
    assert datasets.missing_or_damaged("trainset") == [names[0]]


def test_install_from_refuses_a_wrong_or_incomplete_copy(tiny_registry, tmp_path):
    source, _ = tiny_registry
    wrong = tmp_path / "wrong"
    write_images(wrong, 3, seed=7)  # same names, other pixels
    with pytest.raises(ValueError, match="sha256 differs"):
        datasets.install_from("trainset", wrong)
    (wrong / "image02.png").unlink()
    with pytest.raises(ValueError, match="lacks 1 of the 3 files"):
        datasets.install_from("trainset", wrong)
    assert not (datasets.set_folder("trainset")).exists()  # nothing half-installed


def test_download_fetches_the_pinned_urls_with_their_checksums(tiny_registry, monkeypatch):
    pooch = pytest.importorskip("pooch")
    source, entries = tiny_registry
    asked = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        asked.append((url, known_hash))
        local = source / "test" / fname
        assert known_hash == "sha256:" + hashlib.sha256(local.read_bytes()).hexdigest()
        os.makedirs(path, exist_ok=True)
        (path / fname).write_bytes(local.read_bytes())
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    datasets.download("testset", progress=False)
    assert sorted(url.rsplit("/", 1)[1] for url, _ in asked) == sorted(entries["testset"]["files"])
    assert all("/" + "0" * 40 + "/test/" in url for url, _ in asked)
    assert len(datasets.load_standard_set("testset")[1]) == 2


def test_the_download_command_installs_from_a_folder(tiny_registry, capsys):
    source, _ = tiny_registry
    assert main(["download", "testset", "--from", str(source)]) == 0
    assert "testset: 2 files, checksums verified" in capsys.readouterr().out


def test_protocol_noise_is_unclipped_fixed_and_of_the_right_sigma():
    clean = [torch.full((3, 64, 64), 250, dtype=torch.uint8),
             torch.zeros((3, 64, 64), dtype=torch.uint8)]
    first = datasets.protocol_noise(clean, 25, seed=0)
    again = datasets.protocol_noise(clean, 25, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].dtype == torch.float64
    assert first[0].max() > 255 and first[1].min() < 0  # not clipped
    assert abs((first[1] - 0).std().item() - 25) < 1


# --- fresh pairs ---------------------------------------------------------------------------------


def photos(count=3, size=(40, 56)):
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randint(0, 256, (3, *size), generator=generator, dtype=torch.uint8)
                 for _ in range(count))


def test_fresh_pairs_are_a_pure_function_of_seed_and_step():
    pairs = FreshPairs(photos(), crop_size=16)
    a, b = pairs.batch(5, 8)
    assert a.shape == b.shape == (8, 3, 16, 16) and a.dtype == torch.float32
    assert all(torch.equal(x, y) for x, y in zip((a, b), pairs.batch(5, 8)))
    assert not torch.equal(a, pairs.batch(6, 8)[0])
    assert not torch.equal(a, FreshPairs(photos(), crop_size=16, seed=1).batch(5, 8)[0])


def test_fresh_pairs_have_two_independent_unclipped_noises():
    white = (torch.full((3, 64, 64), 255, dtype=torch.uint8),)
    a, b = FreshPairs(white, crop_size=32, augment=False).batch(0, 64)
    assert a.max() > 1 and b.max() > 1                     # unclipped above white
    difference = (a - b) * 255
    assert abs(difference.std().item() - 25 * math.sqrt(2)) < 0.5  # independent draws
    assert abs((a.mean() - 1).item()) < 0.01                 # mean = clean: no clipping bias
    clipped, _ = FreshPairs(white, crop_size=32, augment=False, clip=True).batch(0, 64)
    assert clipped.max() == 1 and (clipped * 255 - (clipped * 255).round()).abs().max() < 1e-4
    assert (1 - clipped.mean()).item() > 0.03                # the course's bias near white


def test_fresh_pairs_clean_targets_and_crops_inside_the_images():
    marked = torch.zeros((3, 20, 20), dtype=torch.uint8)
    marked[:, 5:15, 5:15] = 200
    noisy, clean = FreshPairs((marked,), crop_size=20, clean_targets=True,
                              noise=GaussianNoise(1e-6)).batch(0, 4)
    assert torch.allclose(clean * 255, marked.float().expand(4, 3, 20, 20))  # whole image
    with pytest.raises(ValueError, match="crop_size=32 is larger than 1 of the images"):
        FreshPairs((marked,), crop_size=32)


def test_the_symmetries_are_turns_and_mirrors_of_the_crop():
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8).to(torch.uint8)
    noisy, clean = FreshPairs((image,), crop_size=8, clean_targets=True, augment=True,
                              noise=GaussianNoise(1e-9)).batch(3, 32)
    variants = {tuple((torch.rot90(image, k, (1, 2)).flip(2) if m else
                       torch.rot90(image, k, (1, 2))).flatten().tolist())
                for k in range(4) for m in (0, 1)}
    seen = {tuple((crop * 255).round().to(torch.uint8).flatten().tolist()) for crop in clean}
    assert seen <= variants and len(seen) > 2


# --- schedules -----------------------------------------------------------------------------------


def test_schedules_start_at_the_base_rate_and_end_near_zero():
    for schedule in ("cosine", "rampdown"):
        assert scheduled_learning_rate(schedule, 1e-3, 0, 100) == 1e-3
        assert scheduled_learning_rate(schedule, 1e-3, 100, 100) < 1e-12
    assert scheduled_learning_rate("cosine", 1.0, 50, 100) == pytest.approx(0.5)
    assert scheduled_learning_rate("rampdown", 1.0, 69, 100) == 1.0     # flat for 70%
    assert scheduled_learning_rate("rampdown", 1.0, 85, 100) == pytest.approx(0.25)
    assert scheduled_learning_rate("constant", 0.1, 99, 100) == 0.1
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        TrainSettings(lr_schedule="linear")


def test_a_scheduled_run_resumes_exactly(tmp_path):
    """Two epochs at once, or one epoch then a resume: the same weights, the same history."""
    settings = TrainSettings(batch_size=4, lr_schedule="cosine", seed=3)
    pairs = FreshPairs(photos(), crop_size=16, seed=3)

    def run(out, epochs, resume=False, callbacks=()):
        torch.manual_seed(0)
        network = build_network("unet", 4, depth=2)
        history = train(network, pairs, None, epochs, settings=settings, out_dir=out,
                        resume=resume, steps_per_epoch=5, progress=False, callbacks=callbacks)
        return network, history

    def interrupt(epoch, history):
        raise KeyboardInterrupt

    whole, whole_history = run(tmp_path / "whole", 2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", 2, callbacks=[interrupt])  # stopped after epoch 1
    split, split_history = run(tmp_path / "split", 2, resume=True)
    assert whole_history["train_loss"] == split_history["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(),
                                                 split.state_dict().values()))
    with pytest.raises(ValueError, match="total_steps"):  # the schedule fixes the length
        run(tmp_path / "split", 3, resume=True)


def test_the_twin_follows_the_same_schedule_and_fresh_batches():
    """scratchnn and its torch.nn twin, same weights, same fresh batches, cosine schedule: the
    same losses (float64)."""
    pairs = FreshPairs(photos(), crop_size=16, seed=1)
    settings = TrainSettings(batch_size=3, lr_schedule="cosine", dtype=torch.float64)
    torch.manual_seed(0)
    ours = build_network("unet", 4, depth=2, upsampling="nearest")
    twin = copy_weights(ours, build_reference("unet", 4, depth=2, upsampling="nearest"))
    mine = train(ours, pairs, None, 2, settings=settings, steps_per_epoch=4, progress=False)
    theirs = train(twin, pairs, None, 2, settings=settings, steps_per_epoch=4, progress=False)
    assert mine["train_loss"][1:] == pytest.approx(theirs["train_loss"][1:], rel=1e-9)


# --- the deeper U-Net ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth,upsampling", [(4, "nearest"), (5, "transposed"), (2, "nearest")])
def test_unet_options_rebuild_from_weights_and_match_the_twin(depth, upsampling):
    torch.manual_seed(0)
    ours = build_network("unet", 6, depth=depth, upsampling=upsampling).to(dtype=torch.float64)
    rebuilt = network_from_state_dict(ours.state_dict())
    assert rebuilt.size_multiple == 2 ** depth == ours.size_multiple
    twin = copy_weights(ours, build_reference("unet", 6, depth=depth, upsampling=upsampling)
                        .double())
    x = torch.rand(2, 3, 2 ** depth * 2, 2 ** depth * 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours.forward(x), twin(x), atol=1e-12)


def test_unknown_unet_options_are_refused():
    with pytest.raises(ValueError, match="depth must be one of"):
        build_network("unet", 4, depth=9)
    with pytest.raises(ValueError, match="takes no option 'depth'"):
        build_network("seed000", 4, depth=3)


def test_run_network_pads_and_tiles_a_deep_unet_exactly():
    """A depth-4 U-Net on a 100x90 image: padded to multiples of 16, computed in 64-pixel tiles
    with 64-pixel margins, equal to the whole-image result."""
    torch.manual_seed(0)
    network = build_network("unet", 4, depth=4).to(dtype=torch.float64)
    image = torch.rand(1, 3, 100, 90, dtype=torch.float64) * 1.4 - 0.2  # unclipped values
    whole = run_network(network, image, tile=512)
    tiled = run_network(network, image, tile=64)
    assert whole.shape == image.shape
    assert torch.allclose(whole, tiled, atol=1e-10)


# --- the command line ----------------------------------------------------------------------------


def test_train_on_a_folder_of_photographs_with_fresh_pairs(tmp_path, monkeypatch):
    write_images(tmp_path / "mine", 3, size=(48, 40), suffix=".jpg")
    out = tmp_path / "run"
    arguments = [sys.executable, "-m", "scratchnn", "train", "--data", str(tmp_path / "mine"),
                 "--network", "unet", "--channels", "4", "--depth", "2",
                 "--upsampling", "nearest", "--crop", "16", "--batch-size", "2",
                 "--steps-per-epoch", "3", "--epochs", "2", "--lr-schedule", "rampdown",
                 "--num-val", "8", "--threads", "1", "--out", str(out)]
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr
    assert "fresh pairs of 16x16 crops of 3" in done.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [0, 1, 2]
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["config"]["steps_per_epoch"] == 3
    assert checkpoint["config"]["depth"] == 2 and checkpoint["config"]["crop"] == 16
    assert network_from_state_dict(checkpoint["network"]).size_multiple == 4

    # Shipped under a name of its own, the card says how to rebuild it, and Model does.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import record_run
    from scratchnn import Model, shipped as shipped_module
    shipped = tmp_path / "pretrained"
    record_run.main([str(out), str(tmp_path / "record"), "--command", "train ...", "--ship",
                     "--name", "unet-mine", "--pretrained-dir", str(shipped)])
    card = json.loads((shipped / "unet-mine.json").read_text())
    assert card["network"]["options"] == {"depth": 2, "upsampling": "nearest"}
    assert card["training"]["lr_schedule"] == "rampdown" and card["training"]["total_steps"] == 6
    assert "FreshPairs" in card["data"]["source"] and "16x16" in card["data"]["source"]
    monkeypatch.setattr(shipped_module, "shipped_networks", lambda: {"unet-mine": card})
    rebuilt = Model(network="unet-mine")
    rebuilt.network.load_state_dict(torch.load(shipped / "unet-mine.pth", weights_only=True))
    assert rebuilt.architecture == "unet" and rebuilt.network.size_multiple == 4


@pytest.mark.parametrize("arguments,message", [
    (["--data", "default", "--crop", "64"], "settings of fresh pairs"),
    (["--data", "no/such/folder"], "expected one of default, course, cifar10, a standard set"),
    (["--network", "seed000", "--depth", "4"], "options of --network unet"),
])
def test_train_refuses_settings_that_do_not_apply(tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--out", str(tmp_path / "run"), *arguments])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


# --- the benchmark script ------------------------------------------------------------------------


def install_tiny_sets(tmp_path, monkeypatch, training_images, size):
    """Generated stand-ins for cbsd432 and kodak24 (2 images), registered and installed."""
    source = tmp_path / "source"
    entries = {name: {"repository": "a/b", "commit": "0" * 40, "folder": name,
                      "files": write_images(source / name, count, size=size, seed=seed)}
               for name, count, seed in (("cbsd432", training_images, 0), ("kodak24", 2, 1))}
    monkeypatch.setattr(datasets, "registry", lambda: entries)
    monkeypatch.setenv(datasets.CACHE_VARIABLE, str(tmp_path / "cache"))
    for name in entries:
        datasets.install_from(name, source / name)


def test_the_standard_sets_benchmark_on_tiny_sets(tmp_path, monkeypatch):
    """benchmarks/standard_sets.py on two generated 'sets': the noisy row is the protocol's, the
    knobs are tuned on the training set, a network runs at its own sigma only, and --resume
    skips the rows already measured."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import standard_sets
    install_tiny_sets(tmp_path, monkeypatch, training_images=8, size=(32, 40))
    torch.manual_seed(0)
    weights = tmp_path / "net.pth"
    torch.save(build_network("unet", 4, depth=2).state_dict(), weights)
    out = tmp_path / "table.json"
    common = ["--sets", "kodak24", "--out", str(out), "--threads", "1"]
    standard_sets.main(common + ["--sigmas", "25", "50", "--methods", "noisy", "blur",
                                 f"ours={weights}@25"])
    rows = json.loads(out.read_text())["rows"]
    assert [(row["method"], row["sigma"]) for row in rows] == [
        ("noisy", 25), ("noisy", 50), ("blur", 25), ("blur", 50), ("ours", 25)]
    noisy = {row["sigma"]: row["psnr_db"] for row in rows if row["method"] == "noisy"}
    assert 20 < noisy[25] < 21 and 14 < noisy[50] < 15.5  # 20.17 and 14.15 dB when unclipped
    assert all(len(row["per_image_db"]) == 2 for row in rows)
    assert rows[2]["knob"]["width"] in standard_sets.BLUR_WIDTHS
    standard_sets.main(common + ["--sigmas", "25", "--methods", "noisy", "blur", "--resume"])
    assert json.loads(out.read_text())["rows"] == rows  # nothing measured twice


def test_the_variant_probe_on_tiny_sets(tmp_path, monkeypatch):
    """benchmarks/probe_quality.py: every variant with every seed, a JSON of the runs, and
    --resume runs nothing twice."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import probe_quality
    install_tiny_sets(tmp_path, monkeypatch, training_images=3, size=(32, 32))
    out = tmp_path / "probe.json"
    arguments = ["--variants", "nearest", "clipped", "--seeds", "0", "1", "--steps", "2",
                 "--crop", "16", "--batch", "2", "--channels", "4", "--out", str(out),
                 "--threads", "1"]
    probe_quality.main(arguments)
    runs = json.loads(out.read_text())["runs"]
    assert sorted((run["variant"], run["seed"]) for run in runs) == [
        ("clipped", 0), ("clipped", 1), ("nearest", 0), ("nearest", 1)]
    assert all(15 < run["kodak24_psnr_db"] < 30 for run in runs)
    probe_quality.main(arguments + ["--resume"])
    assert json.loads(out.read_text())["runs"] == runs


@pytest.fixture
def tiny_standard_sets(tmp_path, monkeypatch):
    """A registry whose ``cbsd432`` (tuning) and ``kodak24`` (testing) are small images made
    here, installed in an empty cache: the benchmark runs end to end without downloading."""
    source = tmp_path / "source"
    entries = {name: {"repository": "someone/somewhere", "commit": "0" * 40, "folder": name,
                      "files": write_images(source / name, count, size=(32, 32), seed=seed)}
               for name, count, seed in (("cbsd432", 8, 0), ("kodak24", 3, 1))}
    monkeypatch.setattr(datasets, "registry", lambda: entries)
    monkeypatch.setenv(datasets.CACHE_VARIABLE, str(tmp_path / "cache"))
    for name in entries:
        datasets.install_from(name, source)
    return entries


def test_the_standard_benchmark_and_its_crops_run_end_to_end(tiny_standard_sets, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import standard_crops, standard_sets
    weights = tmp_path / "net.pth"
    torch.save(build_network("seed000", channels=4).state_dict(), weights)
    out = tmp_path / "standard.json"
    common = ["--sets", "kodak24", "--sigmas", "25", "--out", str(out), "--threads", "1"]
    standard_sets.main(common + ["--methods", "noisy", "blur", "cbm3d", f"tiny={weights}@25"])
    rows = {row["method"]: row for row in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == ["blur", "cbm3d", "noisy", "tiny"]
    for row in rows.values():   # every image measured, and the mean is their mean
        assert len(row["per_image_db"]) == 3
        assert row["psnr_db"] == pytest.approx(np.mean(list(row["per_image_db"].values())))
    # sigma 25 scored unclipped: 20 log10(255 / 25) = 20.17 dB up to the luck of the draw
    # (these random images lie all over 0..255: clipped, the noisy row would score far higher)
    assert rows["noisy"]["psnr_db"] == pytest.approx(20.17, abs=0.3)
    assert all(row["machine"]["cpu"] for row in rows.values())
    assert rows["cbm3d"]["psnr_db"] > rows["noisy"]["psnr_db"]
    assert rows["blur"]["knob"]["width"] in standard_sets.BLUR_WIDTHS
    standard_sets.main(common + ["--methods", "noisy", "--resume"])   # nothing to redo
    assert len(json.loads(out.read_text())["rows"]) == 4

    crops = tmp_path / "crops.npz"
    standard_crops.main(["--network", "tiny", "--weights", str(weights), "--results", str(out),
                         "--size", "8", "--out", str(crops)])
    stored = np.load(crops)
    summary = json.loads(str(stored["summary"]))["crops"]
    gaps = {name: rows["tiny"]["per_image_db"][name] - rows["cbm3d"]["per_image_db"][name]
            for name in rows["tiny"]["per_image_db"]}
    assert [crop["image"] for crop in summary] == [max(gaps, key=gaps.get),
                                                   min(gaps, key=gaps.get)]
    for label in ("win", "loss"):
        for kind in ("noisy", "cbm3d", "ours", "clean"):
            assert stored[f"{label}_{kind}"].shape == (8, 8, 3)
            assert stored[f"{label}_{kind}"].dtype == np.uint8
    names, clean = datasets.load_standard_set("kodak24")
    win = summary[0]
    top, left = win["crop"]["top"], win["crop"]["left"]
    assert np.array_equal(stored["win_clean"],
                          clean[names.index(win["image"])][:, top:top + 8, left:left + 8]
                          .permute(1, 2, 0).numpy())


def test_the_best_square_is_the_one_with_the_largest_sum():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.standard_crops import best_square
    generator = torch.Generator().manual_seed(0)
    advantage = torch.randn(20, 30, generator=generator, dtype=torch.float64)
    sums = advantage.unfold(0, 5, 1).unfold(1, 5, 1).sum((-1, -2))
    expected = divmod(int(sums.argmax()), sums.shape[1])
    assert best_square(advantage, 5) == expected

"""Issue 21: the second round of faults a new user runs into, replayed.

1. ``--overwrite`` never mixes two runs; 2. no silent bad result (broken weights, ``--resume``
into the wrong folder); 3. a write cannot be redirected and reaches the disk; 4. one ``error:``
line instead of a traceback (full disk, read-only folder, decompression bomb, foreign
checkpoint, torchrun); 5. every check before the work; 6. a long run and a large denoise say how
they are doing, ``denoise`` takes several images and ``--quality``, SIGTERM stops like Ctrl-C.

Root may write anywhere, so a read-only folder is simulated by making ``os.access`` say no
(that is what the early check asks), and a full disk by making ``torch.save`` raise ENOSPC.
"""
import errno
import functools
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import tqdm.auto
import tqdm.std
from PIL import Image

import scratchnn.cli
import scratchnn.data
import scratchnn.files
from scratchnn import build_network
from scratchnn.cli import main
from scratchnn.files import (BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE, RUN_FILES,
                             WEIGHTS_FILE, write_atomically)
from scratchnn.imagefile import read_image
from scratchnn.inference import denoise
from scratchnn.train import train

TINY_RUN = ["train", "--num-pairs", "32", "--num-val", "8", "--channels", "4", "--batch-size", "8",
            "--epochs", "1", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what must not change."""
    return {path.relative_to(folder): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def one_error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def fails_cleanly(arguments, capsys):
    """Run the CLI in-process; it must exit with code 2 and one ``error:`` line. Returns it."""
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    return one_error_line(capsys)


def save_png(path, shape=(12, 10, 3), seed=0, file_format="PNG"):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(array).save(path, format=file_format)
    return array


def must_not_run(what):
    """A stand-in for work that a failed check must prevent."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} ran although a check should have failed first")
    return refuse


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A 4-channel seed000 network's weights: denoises in milliseconds."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(build_network("seed000", 4).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "run"
    assert main(TINY_RUN + ["--out", str(folder)]) == 0
    return folder


def copy_of(run, folder):
    folder.mkdir()
    for path in run.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


# --- 1. --overwrite never mixes two runs ---------------------------------------------------------

def test_overwrite_removes_the_old_run_before_anything_else(finished_run, tmp_path, capsys,
                                                            monkeypatch):
    folder = copy_of(finished_run, tmp_path / "run")
    (folder / "notes.txt").write_text("mine")
    stale = folder / f".{CHECKPOINT_FILE}.abc123.tmp"  # left by a killed writer
    stale.write_bytes(b"half")

    def interrupted(*args):
        assert not (folder / WEIGHTS_FILE).exists() and not (folder / BEST_WEIGHTS_FILE).exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(scratchnn.cli, "load_training_data", interrupted)
    assert main(TINY_RUN + ["--seed", "3", "--out", str(folder), "--overwrite"]) == 130
    message = capsys.readouterr().err
    assert "nothing was saved" in message and "--resume" not in message
    assert sorted(path.name for path in folder.iterdir()) == ["notes.txt"]


def test_train_with_overwrite_never_shows_the_old_network(finished_run, tmp_path):
    folder = copy_of(finished_run, tmp_path / "run")
    seen = []
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    train(build_network("seed000", 4), images, images, 1, out_dir=folder, overwrite=True,
          progress=False, callbacks=[lambda *_: seen.append((folder / WEIGHTS_FILE).exists())])
    assert seen == [False] and (folder / WEIGHTS_FILE).exists()


def test_a_stopped_run_never_suggests_a_resume_that_would_fail(finished_run, tmp_path):
    """Stopped before --overwrite removed the old run: its checkpoint has other settings."""
    folder = copy_of(finished_run, tmp_path / "run")
    argv = TINY_RUN + ["--lr", "0.5", "--out", str(folder), "--overwrite"]
    args = scratchnn.cli.make_parser().parse_args(argv)
    assert scratchnn.cli.saved_so_far(args, argv).startswith("nothing was saved")
    argv = TINY_RUN + ["--out", str(folder), "--overwrite"]  # the same settings: it would work
    args = scratchnn.cli.make_parser().parse_args(argv)
    assert scratchnn.cli.saved_so_far(args, argv).endswith("--resume")


# --- 2. no silent bad result ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_weights_give_one_line_and_no_file(tmp_path, capsys, bad):
    weights = build_network("seed000", 4).state_dict()
    weights[next(iter(weights))].view(-1)[0] = bad
    torch.save(weights, tmp_path / "broken.pth")
    save_png(tmp_path / "in.png")
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                          "--weights", str(tmp_path / "broken.pth")], capsys)
    assert ("NaN" if bad != bad else "infinite") in line and "diverged" in line
    assert not (tmp_path / "out.png").exists()


def test_weights_whose_output_is_not_finite_give_one_line_and_no_file(tmp_path, capsys):
    torch.manual_seed(0)
    huge = {name: tensor * 1e30 for name, tensor in build_network("seed000", 4)
            .state_dict().items()}  # finite, but inf - inf = NaN inside the network
    torch.save(huge, tmp_path / "huge.pth")
    save_png(tmp_path / "in.png")
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                          "--weights", str(tmp_path / "huge.pth")], capsys)
    assert "NaN or infinite" in line and "nothing was written" in line
    assert not (tmp_path / "out.png").exists()


def test_denoise_refuses_a_non_finite_output():
    class Broken:
        def param(self):
            return [(torch.zeros(1), torch.zeros(1))]

        def forward(self, images):
            return images * float("nan")

    with pytest.raises(ValueError, match="NaN or infinite"):
        denoise(Broken(), torch.full((1, 3, 8, 8), 128.0))


def test_resume_without_a_checkpoint_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scratchnn.cli, "load_training_data", must_not_run("building the data"))
    line = fails_cleanly(TINY_RUN + ["--out", str(tmp_path / "tpyo"), "--resume"], capsys)
    assert "no checkpoint.pt in" in line and "tpyo" in line and "leave out --resume" in line
    assert not (tmp_path / "tpyo").exists()


# --- 3. a write cannot be redirected, and reaches the disk ---------------------------------------

def test_a_planted_symlink_cannot_redirect_a_write(tmp_path, tiny_weights):
    shared, outside = tmp_path / "shared", tmp_path / "outside.txt"
    shared.mkdir()
    outside.write_text("must not change")
    save_png(shared / "in.png")
    # The temporary name the first version used, planted in advance by another user.
    (shared / f".out.{os.getpid()}.tmp.png").symlink_to(outside)
    assert main(["denoise", str(shared / "in.png"), str(shared / "out.png"),
                 "--weights", str(tiny_weights)]) == 0
    assert outside.read_text() == "must not change"
    assert Image.open(shared / "out.png").format == "PNG"


def test_a_write_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace",
                        lambda *paths: events.append("replace") or real_replace(*paths))
    write_atomically(tmp_path / "a.bin", b"data")
    assert events == ["fsync", "replace", "fsync"]  # the file, the rename, the folder
    assert (tmp_path / "a.bin").read_bytes() == b"data"


def test_the_temporary_file_is_made_exclusively_with_an_unpredictable_name(tmp_path,
                                                                           monkeypatch):
    opened, real_open = [], os.open

    def recording_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            opened.append((os.path.basename(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    for _ in range(2):
        write_atomically(tmp_path / "a.bin", b"data")
    created = [(name, flags) for name, flags in opened if flags & os.O_CREAT]
    assert len(created) == 2 and created[0][0] != created[1][0]
    assert all(flags & os.O_EXCL for _, flags in created)
    assert all(str(os.getpid()) not in name for name, _ in created)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.bin"]


def test_a_new_file_gets_the_usual_permissions_and_a_replaced_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "new.bin", b"x")
        (tmp_path / "private.bin").write_bytes(b"old")
        os.chmod(tmp_path / "private.bin", 0o600)
        write_atomically(tmp_path / "private.bin", b"new")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "private.bin").st_mode) == 0o600


# --- 4. one line instead of a traceback ----------------------------------------------------------

def test_a_full_disk_while_training_gives_one_line_and_a_resume_that_works(tmp_path, capsys,
                                                                           monkeypatch):
    real_write, writes = scratchnn.files.write_to_disk, []

    def write_until_the_disk_is_full(file, data):
        writes.append(len(data))
        if len(writes) > 4:  # epoch 0 writes best.pth, checkpoint.pt, history.json, psnr.png
            file.write(data[:len(data) // 2])  # then the disk fills up in the middle of a file
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(file, data)

    folder = tmp_path / "run"
    arguments = TINY_RUN[:-4] + ["--epochs", "2", "--threads", "1", "--out", str(folder)]
    monkeypatch.setattr(scratchnn.files, "write_to_disk", write_until_the_disk_is_full)
    assert main(arguments) == 1
    line = one_error_line(capsys)
    assert "No space left on device" in line and "free some space" in line
    assert str(folder) in line and ".tmp" not in line
    assert "epoch 0, the last one finished, is saved" in line and line.endswith("--resume")
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(".")) == []
    monkeypatch.setattr(scratchnn.files, "write_to_disk", real_write)
    assert main(arguments + ["--resume"]) == 0  # the command it suggests works


def test_a_read_only_out_is_refused_before_the_data_is_built(tmp_path, capsys, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False
                        if str(path).startswith(str(tmp_path)) else real_access(path, mode))
    monkeypatch.setattr(scratchnn.cli, "load_training_data", must_not_run("building the data"))
    line = fails_cleanly(TINY_RUN + ["--out", str(tmp_path / "run")], capsys)
    assert "--out" in line and "cannot write into" in line and "choose another folder" in line
    assert not (tmp_path / "run").exists()


def test_a_write_the_system_refuses_names_the_users_file(tmp_path, capsys, monkeypatch,
                                                         tiny_weights):
    save_png(tmp_path / "in.png")

    def refuse(source, target):
        raise PermissionError(errno.EACCES, "Permission denied", str(source))

    monkeypatch.setattr(os, "replace", refuse)
    assert main(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                 "--weights", str(tiny_weights)]) == 1
    line = one_error_line(capsys)
    assert f"cannot write {tmp_path / 'out.png'}: Permission denied" in line
    assert ".tmp" not in line and sorted(path.name for path in tmp_path.iterdir()) == ["in.png"]


def test_a_decompression_bomb_gives_one_line(tmp_path, capsys, monkeypatch):
    save_png(tmp_path / "in.png", shape=(12, 10, 3))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # 120 pixels: over twice the limit
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png")],
                         capsys)
    assert "too large to read safely" in line and "decompression bomb" in line
    assert not (tmp_path / "out.png").exists()


def test_a_foreign_checkpoint_under_resume_gives_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"model": torch.zeros(3)}, folder / CHECKPOINT_FILE)
    monkeypatch.setattr(scratchnn.cli, "load_training_data", must_not_run("building the data"))
    line = fails_cleanly(TINY_RUN + ["--out", str(folder), "--resume"], capsys)
    assert "is not a scratchnn training checkpoint" in line and "'epoch'" in line


def test_under_torchrun_the_error_line_is_left_for_torchruns_report(tmp_path, capsys,
                                                                    monkeypatch):
    """torchrun reads each failed process's cause from TORCHELASTIC_ERROR_FILE (see
    test_distributed.py for the real torchrun)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    line = fails_cleanly(TINY_RUN + ["--lr", "-1", "--out", str(tmp_path / "run")], capsys)
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(error_file))
    report = ChildFailedError("scratchnn", {0: failure}).format_msg()
    assert f"traceback : {line}" in report


# --- 5. every check before the work --------------------------------------------------------------

def test_denoise_finds_a_missing_output_folder_before_denoising(tmp_path, capsys, monkeypatch):
    save_png(tmp_path / "in.png")
    monkeypatch.setattr(scratchnn.cli, "denoise", must_not_run("denoising"))
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"),
                          str(tmp_path / "missing" / "out.png")], capsys)
    assert "does not exist" in line and str(tmp_path / "missing") in line and ".tmp" not in line


def test_denoise_refuses_rgba_as_jpeg_before_denoising(tmp_path, capsys, monkeypatch):
    save_png(tmp_path / "in.png", shape=(12, 10, 4))
    monkeypatch.setattr(scratchnn.cli, "denoise", must_not_run("denoising"))
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.jpg")],
                         capsys)
    assert "JPEG" in line and "RGBA" in line and "out.jpg" in line


@pytest.mark.parametrize("options, expected", [
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0"),
    (["--momentum", "0.9"], "momentum is an SGD setting"),
    (["--data", "course", "--train-file", "{folder}/train.pkl",
      "--val-file", "{folder}/missing.pkl"], "--val-file"),
], ids=["negative-lr", "zero-lr", "nan-lr", "momentum-with-adam", "missing-val-file"])
def test_train_checks_its_settings_before_building_the_data(tmp_path, capsys, monkeypatch,
                                                            options, expected):
    torch.save((torch.zeros(2, 3, 4, 4, dtype=torch.uint8),) * 2, tmp_path / "train.pkl")
    monkeypatch.setattr(scratchnn.cli, "load_training_data", must_not_run("building the data"))
    monkeypatch.setattr(scratchnn.data, "load_course_data", must_not_run("reading the data"))
    options = [option.format(folder=tmp_path) for option in options]
    line = fails_cleanly(TINY_RUN + options + ["--out", str(tmp_path / "run")], capsys)
    assert expected in line
    assert not (tmp_path / "run").exists()


def test_resume_with_other_settings_is_refused_before_the_data_is_built(finished_run, tmp_path,
                                                                        capsys, monkeypatch):
    folder = copy_of(finished_run, tmp_path / "run")
    monkeypatch.setattr(scratchnn.cli, "load_training_data", must_not_run("building the data"))
    line = fails_cleanly(TINY_RUN + ["--lr", "0.5", "--epochs", "3", "--out", str(folder),
                                     "--resume"], capsys)
    assert "different settings" in line and "lr: saved 0.001, now 0.5" in line


# --- 6. what a long run and a large denoise tell -------------------------------------------------

def test_train_logs_one_line_per_epoch_without_progress_bars(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(TINY_RUN[:-4] + ["--epochs", "2", "--threads", "1",
                                 "--out", str(tmp_path / "run")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1/2", "epoch 2/2"]
    for line in lines[:2]:
        assert "train loss" in line and "photos" in line and "varied" in line
        assert " dB" in line and " s;" in line and "best so far: epoch" in line
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())
    assert history["epoch"] == [0, 1, 2]


def bars_on(monkeypatch):
    """Progress bars on, even where TQDM_DISABLE=1 (tqdm reads it once, when imported)."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.std.tqdm, disable=False))


def test_a_large_image_shows_a_progress_bar_over_its_tiles(tmp_path, capsys, monkeypatch,
                                                           tiny_weights):
    bars_on(monkeypatch)
    save_png(tmp_path / "big.png", shape=(300, 260, 3))  # 2 x 2 tiles of 192 pixels
    assert main(["denoise", str(tmp_path / "big.png"), str(tmp_path / "out.png"),
                 "--weights", str(tiny_weights)]) == 0
    assert "big.png, tiles" in capsys.readouterr().err


def test_denoise_several_images_and_a_folder_into_out_dir(tmp_path, capsys, monkeypatch,
                                                          tiny_weights):
    bars_on(monkeypatch)
    (tmp_path / "album").mkdir()
    save_png(tmp_path / "album" / "a.png", seed=1)
    save_png(tmp_path / "album" / "b.jpg", seed=2, file_format="JPEG")
    (tmp_path / "album" / "notes.txt").write_text("not an image")
    save_png(tmp_path / "c.png", seed=3)
    assert main(["denoise", str(tmp_path / "album"), str(tmp_path / "c.png"),
                 "--out-dir", str(tmp_path / "out"), "--weights", str(tiny_weights)]) == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg",
                                                                          "c.png"]
    captured = capsys.readouterr()
    assert captured.out.count("denoised ") == 3 and "images" in captured.err


@pytest.mark.parametrize("arguments, expected", [
    (["{folder}/a.png", "{folder}/b.png", "{folder}/c.png"], "add --out-dir"),
    (["{folder}/a.png"], "add --out-dir"),
    (["{folder}/a.png", "{folder}/other/a.png", "--out-dir", "{folder}/out"],
     "would both be written to"),
    (["{folder}/a.png", "{folder}/other"], "use --out-dir"),
    (["{folder}/a.png", "{folder}/out.png", "--quality", "80"], "--quality applies to JPEG"),
], ids=["three-without-out-dir", "one-without-out-dir", "same-name", "folder-as-output",
        "quality-for-png"])
def test_denoise_refuses_ambiguous_paths(tmp_path, capsys, arguments, expected):
    (tmp_path / "other").mkdir()
    for path in (tmp_path / "a.png", tmp_path / "b.png", tmp_path / "other" / "a.png"):
        save_png(path)
    before = snapshot(tmp_path)
    arguments = [argument.format(folder=tmp_path) for argument in arguments]
    assert expected in fails_cleanly(["denoise", *arguments], capsys)
    assert snapshot(tmp_path) == before


def test_quality_sets_the_jpeg_quality(tmp_path, tiny_weights):
    save_png(tmp_path / "in.png", shape=(64, 64, 3))
    sizes = {}
    for quality in (None, "95", "20"):
        out = tmp_path / f"out{quality}.jpg"
        assert main(["denoise", str(tmp_path / "in.png"), str(out), "--weights",
                     str(tiny_weights)] + (["--quality", quality] if quality else [])) == 0
        sizes[quality] = out.read_bytes()
    assert sizes[None] == sizes["95"]  # the default
    assert len(sizes["20"]) < len(sizes["95"])


def test_sigterm_saves_like_ctrl_c(tmp_path):
    folder = tmp_path / "run"
    arguments = ["train", "--num-pairs", "2000", "--num-val", "8", "--channels", "4",
                 "--batch-size", "4", "--epochs", "50", "--threads", "1", "--out", str(folder)]
    process = subprocess.Popen([sys.executable, "-m", "scratchnn", *arguments],
                               env={**os.environ, "TQDM_DISABLE": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (folder / HISTORY_FILE).exists():  # written after the first checkpoint
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "Traceback" not in stderr
    assert "terminated (SIGTERM): epoch" in stderr and "is saved in" in stderr
    assert stderr.strip().endswith("--resume")
    assert set(path.name for path in folder.iterdir()) <= set(RUN_FILES)


def test_the_sigterm_handler_is_put_back_after_a_command(tmp_path, tiny_weights):
    before = signal.getsignal(signal.SIGTERM)
    save_png(tmp_path / "in.png")
    assert main(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                 "--weights", str(tiny_weights)]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


# --- the header tells what read_image will return ------------------------------------------------

@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "P+transparency", "I;16",
                                  "CMYK"])
def test_the_layout_known_from_the_header_is_what_read_image_returns(tmp_path, mode):
    from scratchnn.imagefile import image_layout, open_image
    image = Image.new(mode.split("+")[0], (5, 4))
    if mode == "P+transparency":
        image.info["transparency"] = 0
    suffix = ".tif" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"image{suffix}")
    _, colour_channels, alpha = read_image(tmp_path / f"image{suffix}")
    layout = image_layout(open_image(tmp_path / f"image{suffix}", decode=False), "image")
    assert layout == (colour_channels, alpha.shape[2])

"""Nothing lost, clear errors: the faults a new user runs into, replayed.

Every user mistake must end in one ``error:`` line (exit code 2, no traceback) and leave every
file on disk exactly as it was. Files are compared byte for byte before and after.
"""
import io
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scratchnn import Model, build_network
from scratchnn.cli import main
from scratchnn.files import CHECKPOINT_FILE, HISTORY_FILE

TINY_RUN = ["train", "--num-pairs", "32", "--num-val", "8", "--channels", "4", "--batch-size", "8",
            "--epochs", "1", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what must not change."""
    return {path.relative_to(folder): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def fails_cleanly(arguments, capsys):
    """Run the CLI in-process; it must exit with code 2 and one ``error:`` line. Returns it."""
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def run_cli(arguments, **kwargs):
    environment = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "scratchnn", *arguments], env=environment,
                          capture_output=True, text=True, timeout=300, **kwargs)


def save_png(path, shape=(12, 10, 3), seed=0, file_format="PNG"):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(array).save(path, format=file_format)
    return array


# --- denoise never destroys a file ---------------------------------------------------------------

def test_output_without_extension_is_refused_and_nothing_is_written(tmp_path, capsys):
    save_png(tmp_path / "in.png")
    before = snapshot(tmp_path)
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out")], capsys)
    assert "no extension" in line and ".png" in line
    assert snapshot(tmp_path) == before


def test_unknown_extension_is_refused_and_an_existing_file_survives(tmp_path, capsys):
    save_png(tmp_path / "in.png")
    (tmp_path / "out.xyz").write_bytes(b"precious")
    before = snapshot(tmp_path)
    assert ".xyz" in fails_cleanly(["denoise", str(tmp_path / "in.png"),
                                    str(tmp_path / "out.xyz")], capsys)
    assert snapshot(tmp_path) == before


def test_rgba_as_jpeg_fails_before_touching_the_existing_output(tmp_path, capsys):
    save_png(tmp_path / "in.png", shape=(12, 10, 4))
    save_png(tmp_path / "out.jpg", file_format="JPEG")
    before = snapshot(tmp_path)
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.jpg")], capsys)
    assert "JPEG" in line and "RGBA" in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("output", ["{folder}/photo", "{folder}/./photo", "{folder}/link"])
def test_writing_over_the_input_is_refused(tmp_path, capsys, output):
    save_png(tmp_path / "photo")  # an extension-less PNG
    (tmp_path / "link").symlink_to(tmp_path / "photo")
    before = snapshot(tmp_path)
    line = fails_cleanly(["denoise", str(tmp_path / "photo"), output.format(folder=tmp_path)],
                         capsys)
    assert "is the input image itself" in line
    assert snapshot(tmp_path) == before


def test_a_successful_write_leaves_no_temporary_file(tmp_path):
    save_png(tmp_path / "in.png")
    assert main(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.webp")]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.png", "out.webp"]
    assert Image.open(tmp_path / "out.webp").format == "WEBP"


def test_exif_orientation_is_applied(tmp_path):
    """A phone stores a portrait photo as a landscape one plus 'turn me' in EXIF (tag 6)."""
    stored = Image.fromarray(np.zeros((8, 20, 3), dtype=np.uint8))  # 20 wide, 8 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif)
    assert main(["denoise", str(tmp_path / "phone.jpg"), str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (8, 20)  # upright: 8 wide, 20 high


# --- one error line instead of a traceback -------------------------------------------------------

def test_a_text_file_named_png_gives_one_line_without_a_traceback(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    result = run_cli(["denoise", str(tmp_path / "notes.png"), str(tmp_path / "out.png")])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "not an image file" in result.stderr and "imageio" not in result.stderr
    assert not (tmp_path / "out.png").exists()


class Foreign:
    """A class that ``weights_only`` loading refuses to rebuild."""


@pytest.mark.parametrize("content", [
    b"",                                                  # empty
    b"\x00garbage\xff" * 50,                              # garbage
    pickle.dumps({"network": Foreign()}),                 # a pickle of arbitrary objects
    "zip",                                                # a truncated torch file
    "foreign",                                            # a torch file holding a Python object
    "tensor",                                             # a torch file holding no weights
], ids=["empty", "garbage", "pickle", "truncated", "foreign", "no-weights"])
def test_bad_checkpoints_give_one_line_and_never_suggest_weights_only_false(tmp_path, capsys,
                                                                             content):
    if content == "zip":
        buffer = io.BytesIO()
        torch.save({"0.weight": torch.zeros(2)}, buffer)
        content = buffer.getvalue()[:100]
    elif content == "foreign":
        buffer = io.BytesIO()
        torch.save({"network": Foreign()}, buffer)
        content = buffer.getvalue()
    elif content == "tensor":
        buffer = io.BytesIO()
        torch.save(torch.zeros(3), buffer)
        content = buffer.getvalue()
    (tmp_path / "weights.pth").write_bytes(content)
    save_png(tmp_path / "in.png")
    before = snapshot(tmp_path)
    line = fails_cleanly(["denoise", str(tmp_path / "in.png"), str(tmp_path / "out.png"),
                          "--weights", str(tmp_path / "weights.pth")], capsys)
    assert "not a scratchnn checkpoint or weights file" in line
    assert "weights_only" not in line
    assert snapshot(tmp_path) == before


def test_cifar10_without_torchvision_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if it were not installed
    line = fails_cleanly(TINY_RUN + ["--data", "cifar10", "--out", str(tmp_path / "run")], capsys)
    assert "pip install torchvision" in line


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path)
    line = fails_cleanly(TINY_RUN + ["--out", str(tmp_path / "notes.txt")], capsys)
    assert "is a file" in line
    assert snapshot(tmp_path) == before


def test_training_images_whose_size_is_not_a_multiple_of_4(tmp_path, capsys):
    images = torch.randint(0, 256, (16, 3, 30, 30), dtype=torch.uint8)
    torch.save((images, images), tmp_path / "train.pkl")
    torch.save((images, images), tmp_path / "val.pkl")
    line = fails_cleanly(["train", "--data", "course", "--train-file", str(tmp_path / "train.pkl"),
                          "--val-file", str(tmp_path / "val.pkl"), "--channels", "4",
                          "--out", str(tmp_path / "run")], capsys)
    assert "divisible by 4" in line and "30x30" in line
    assert not (tmp_path / "run").exists()


def test_model_train_says_the_size_must_be_a_multiple_of_4():
    images = torch.randint(0, 256, (4, 3, 30, 32), dtype=torch.uint8)
    with pytest.raises(ValueError, match="divisible by 4"):
        Model(network="seed003").train(images, images, 1)


# --- train never overwrites a run unasked --------------------------------------------------------

@pytest.fixture(scope="module")
def finished_tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "run"
    assert main(TINY_RUN + ["--out", str(folder)]) == 0
    return folder


def test_an_existing_run_is_refused_without_resume_or_overwrite(finished_tiny_run, capsys):
    before = snapshot(finished_tiny_run)
    line = fails_cleanly(TINY_RUN + ["--out", str(finished_tiny_run)], capsys)
    assert "--resume" in line and "--overwrite" in line
    assert snapshot(finished_tiny_run) == before


def test_resuming_a_finished_run_says_nothing_is_left(finished_tiny_run, capsys):
    before = snapshot(finished_tiny_run)
    assert main(TINY_RUN + ["--out", str(finished_tiny_run), "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert snapshot(finished_tiny_run) == before


def test_overwrite_starts_again(tmp_path, finished_tiny_run):
    folder = tmp_path / "run"
    folder.mkdir()
    for path in finished_tiny_run.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    assert main(TINY_RUN + ["--seed", "3", "--out", str(folder), "--overwrite"]) == 0
    assert torch.load(folder / CHECKPOINT_FILE, weights_only=True)["config"]["seed"] == 3


def test_ctrl_c_says_what_is_saved_and_how_to_resume(tmp_path):
    folder = tmp_path / "run"
    arguments = ["train", "--num-pairs", "2000", "--num-val", "8", "--channels", "4",
                 "--batch-size", "4", "--epochs", "50", "--threads", "1", "--out", str(folder)]
    environment = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "scratchnn", *arguments], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (folder / HISTORY_FILE).exists() or b'"epoch": [\n  0,\n  1' not in \
            (folder / HISTORY_FILE).read_bytes():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "is saved in" in stderr and "--resume" in stderr
    epoch = torch.load(folder / CHECKPOINT_FILE, weights_only=True)["epoch"]
    assert f"epoch {epoch}" in stderr and epoch >= 1


# --- predict: the 0..255 convention --------------------------------------------------------------

def test_predict_refuses_images_scaled_to_0_1():
    model = Model(network="seed000")
    with pytest.raises(ValueError, match="scaled to \\[0, 1\\].*255"):
        model.predict(torch.rand(2, 3, 8, 8))


def test_predict_accepts_an_all_black_float_image():
    network_output = Model(network="seed000").predict(torch.zeros(1, 3, 8, 8))
    assert network_output.shape == (1, 3, 8, 8)


# --- property-based: random bad input never escapes as a traceback -------------------------------

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_any_bytes_as_an_image_fail_cleanly_and_change_nothing(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("bytes")
    (folder / "in.png").write_bytes(content)
    (folder / "out.png").write_bytes(b"old")
    before = snapshot(folder)
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", str(folder / "in.png"), str(folder / "out.png")])
    assert exit_info.value.code == 2
    assert snapshot(folder) == before


def not_a_count(text):
    try:
        return int(text) < 1
    except ValueError:
        return True


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argument=st.sampled_from(["--epochs", "--batch-size", "--num-pairs", "--num-val",
                                 "--channels", "--threads"]),
       value=st.one_of(st.integers(max_value=0).map(str),
                       st.text(max_size=5).filter(not_a_count)))
def test_bad_numbers_on_the_command_line_exit_with_2(tmp_path_factory, capsys, argument, value):
    folder = tmp_path_factory.mktemp("args")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", argument, value, "--out", str(folder / "run")])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err and not (folder / "run").exists()


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
       dtype=st.sampled_from([torch.uint8, torch.int32, torch.float32, torch.float64, torch.bool]),
       scale=st.sampled_from([-1.0, 0.5, 255.0, 1000.0, float("nan")]))
def test_predict_raises_value_error_or_denoises(shape, dtype, scale):
    images = (torch.rand(shape) * scale).to(dtype) if dtype.is_floating_point else \
        torch.zeros(shape, dtype=dtype)
    network = build_network("seed000", 4)
    model = Model(network="seed000")
    model.network = network
    try:
        out = model.predict(images)
    except ValueError:
        return
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 255


def test_augment_with_other_data_is_refused_not_ignored(tmp_path, capsys):
    line = fails_cleanly(TINY_RUN + ["--data", "cifar10", "--augment",
                                     "--out", str(tmp_path / "run")], capsys)
    assert "--augment and --recolour" in line and not (tmp_path / "run").exists()

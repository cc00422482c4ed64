"""Tests for benchmarks/denoisers.py, the table of classical denoisers: a few crops, seconds.

BM3D takes over 2 s per crop, so its tests use one or two crops; ``-k "not bm3d"`` skips them,
and they are skipped where the ``bm3d`` package is not installed (it is not a requirement).
"""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from scratchnn.data import VALIDATION_PHOTOS, VARIED_VALIDATION_PHOTOS, make_validation_set

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "denoisers.py"
spec = importlib.util.spec_from_file_location("denoisers", SCRIPT)
denoisers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(denoisers)

FAST_METHODS = [name for name in denoisers.METHODS if name != "bm3d"]
REAL_FAST_METHODS = [name for name in FAST_METHODS if name != "noisy"]


@pytest.fixture(scope="module")
def crops():
    """Six noisy crops of each validation set, with their clean versions, one after the other."""
    noisy_a, clean_a = denoisers.validation_crops(VALIDATION_PHOTOS, 3)
    noisy_b, clean_b = denoisers.validation_crops(VARIED_VALIDATION_PHOTOS, 3)
    return torch.cat([noisy_a, noisy_b]), torch.cat([clean_a, clean_b])


def noisy_psnr(noisy, clean):
    return denoisers.score(denoisers.to_float(noisy, torch.float64), clean)


def check_images(denoised, noisy):
    assert denoised.shape == noisy.shape
    assert denoised.dtype == torch.float64
    assert denoised.min() >= 0 and denoised.max() <= 1


@pytest.mark.parametrize("name", FAST_METHODS)
def test_each_method_keeps_the_shape_and_stays_in_0_1(name, crops):
    noisy, _ = crops
    check_images(denoisers.denoise_each(denoisers.METHODS[name].denoise, noisy), noisy)


def test_the_noisy_input_method_changes_nothing(crops):
    noisy, _ = crops
    denoised = denoisers.denoise_each(denoisers.noisy_input, noisy)
    assert torch.equal(denoised, denoisers.to_float(noisy, torch.float64))


@pytest.mark.parametrize("name", REAL_FAST_METHODS)
def test_each_denoiser_beats_the_noisy_input(name, crops):
    noisy, clean = crops
    denoised = denoisers.denoise_each(denoisers.METHODS[name].denoise, noisy)
    # Even a 3x3 box filter gains over 6 dB at sigma = 25/255; 2 dB leaves room for the crops.
    assert denoisers.score(denoised, clean) > noisy_psnr(noisy, clean) + 2


def test_bm3d_keeps_the_shape_and_beats_the_noisy_input(crops):
    pytest.importorskip("bm3d")
    noisy, clean = crops[0][:2], crops[1][:2]
    denoised = denoisers.denoise_each(denoisers.bm3d_rgb, noisy)
    check_images(denoised, noisy)
    assert denoisers.score(denoised, clean) > noisy_psnr(noisy, clean) + 2


def test_tuning_picks_the_best_value_of_its_grid():
    noisy, clean = denoisers.tuning_set(12)  # the first 4 are nearly flat: a huge blur wins
    # Width 0.3 hardly blurs, width 6 blurs everything away: 1.25 must win.
    method = denoisers.Method("gaussian", "Gaussian blur", denoisers.gaussian_blur, "width",
                              (0.3, 1.25, 6.0))
    value, curve = denoisers.tune(method, noisy, clean)
    assert [point[0] for point in curve] == [0.3, 1.25, 6.0]
    assert value == 1.25 == max(curve, key=lambda point: point[1])[0]


def test_tune_all_tunes_only_methods_with_a_knob_and_chooses_from_their_grids():
    methods = [denoisers.METHODS[name] for name in ("noisy", "box", "gaussian", "tv")]
    chosen = denoisers.tune_all(methods, num_images=3)
    assert sorted(chosen) == ["gaussian", "tv"]
    for name, result in chosen.items():
        assert result["knob"] == denoisers.METHODS[name].knob
        assert result["value"] in denoisers.METHODS[name].grid


def test_tuning_crops_come_from_the_training_photos_not_the_validation_photos():
    tuning_noisy, _ = denoisers.tuning_set(5)
    validation_noisy, _ = denoisers.validation_crops(VALIDATION_PHOTOS, 5)
    assert not torch.equal(tuning_noisy, validation_noisy)
    expected, _ = make_validation_set(5, seed=denoisers.TUNING_SEED,
                                      photos=denoisers.TRAIN_PHOTOS)
    assert torch.equal(tuning_noisy, expected)


def test_validation_crops_are_the_first_of_the_1000_the_training_command_uses():
    noisy, clean = denoisers.validation_crops(VARIED_VALIDATION_PHOTOS, 7)
    all_noisy, all_clean = make_validation_set(1000, seed=0, photos=VARIED_VALIDATION_PHOTOS)
    assert torch.equal(noisy, all_noisy[:7]) and torch.equal(clean, all_clean[:7])


def test_network_row_with_the_identity_gains_nothing(crops):
    noisy, clean = crops
    row = denoisers.network_row("identity", lambda images: images.float(), noisy, clean)
    assert row["gain_db"] == pytest.approx(0, abs=1e-9)
    assert row["psnr_db"] == pytest.approx(noisy_psnr(noisy, clean), abs=1e-3)
    assert row["seconds_per_image"] >= 0


def test_network_row_rejects_a_wrong_shape(crops):
    noisy, clean = crops
    with pytest.raises(ValueError, match="shape"):
        denoisers.network_row("half", lambda images: images[:, :, :16].float(), noisy, clean)


def test_the_shipped_network_beats_the_noisy_input(crops):
    noisy, clean = crops
    name, predict = denoisers.load_network_predict("pretrained")
    row = denoisers.network_row(name, predict, noisy, clean)
    assert row["gain_db"] > 2


def test_the_json_has_the_fields(tmp_path, capsys):
    path = tmp_path / "denoisers.json"
    denoisers.main(["--quick", "--methods", "noisy", "box", "gaussian", "--sets", "photos",
                    "--json", str(path)])
    result = json.loads(path.read_text())
    for key in ("date", "machine", "noise", "num_images", "tuning", "sets", "wall_seconds"):
        assert key in result
    for key in ("cpu", "cores", "torch_threads", "torch", "scikit-image", "bm3d"):
        assert key in result["machine"]
    assert result["noise"]["sigma_0_255"] == pytest.approx(25)
    assert result["num_images"] == 4
    assert result["tuning"]["chosen"]["gaussian"]["value"] in denoisers.METHODS["gaussian"].grid
    rows = result["sets"]["photos"]["rows"]
    assert [row["method"] for row in rows] == ["noisy", "box", "gaussian"]
    assert rows[0]["gain_db"] == 0 and rows[1]["gain_db"] > 2
    assert rows[2]["params"] == {"width": result["tuning"]["chosen"]["gaussian"]["value"]}
    for key in ("psnr_db", "gain_db", "seconds_per_image", "cpu_seconds_per_image"):
        assert key in rows[0]
    assert "Gaussian blur" in capsys.readouterr().out

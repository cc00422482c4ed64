"""tools/record_run.py: a run's record in results/, and its best weights shipped with a card."""
import json
import sys
from pathlib import Path

import torch

from scratchnn.cli import main as scratchnn_main
from scratchnn.networks import network_from_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from record_run import main as record_main  # noqa: E402  (tools/ is not a package)

RUN = ["train", "--num-pairs", "32", "--num-val", "8", "--channels", "4", "--batch-size", "8",
       "--epochs", "2", "--threads", "1"]


def test_record_and_ship_a_run(tmp_path):
    run, record, shipped = tmp_path / "run", tmp_path / "results" / "n2n", tmp_path / "pretrained"
    shipped.mkdir()
    assert scratchnn_main(RUN + ["--out", str(run)]) == 0
    record_main([str(run), str(record), "--command", "python -m scratchnn train ...", "--ship",
                 "--pretrained-dir", str(shipped), "--threads", "1"])
    assert sorted(path.name for path in record.iterdir()) == ["history.json", "psnr.png",
                                                              "run.json"]
    summary = json.loads((record / "run.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert summary["best_epoch"] == history["best_epoch"]
    assert summary["best_val_psnr_db"] == max(history["val_psnr"])
    assert summary["command"] == "python -m scratchnn train ..." and summary["epochs_done"] == 2
    card = json.loads((shipped / "seed000.json").read_text())
    assert card["network"] == {"kind": "seed000", "channels": 4, "framework": "scratchnn"}
    assert card["validation_psnr_db"] == round(max(history["val_psnr"]), 3)
    assert card["training"]["best_epoch"] == history["best_epoch"]
    assert len(card["varied_validation_psnr_per_epoch_db"]) == 3
    weights = torch.load(shipped / "seed000.pth", weights_only=True)
    best = torch.load(run / "best.pth", weights_only=True)
    assert all(torch.equal(weights[name], best[name]) for name in best)
    network_from_state_dict(weights)  # loads into a seed000 network of 4 channels


def test_ship_the_last_epoch_of_a_schedule(tmp_path):
    run, shipped = tmp_path / "run", tmp_path / "pretrained"
    assert scratchnn_main(RUN + ["--out", str(run)]) == 0
    record_main([str(run), str(tmp_path / "record"), "--command", "train ...", "--ship",
                 "--epoch", "last", "--pretrained-dir", str(shipped), "--threads", "1",
                 "--note", "stopped once, resumed"])
    card = json.loads((shipped / "seed000.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert card["training"]["shipped_epoch"] == 2 and "last epoch" in card["what"]
    assert card["validation_psnr_db"] == round(history["val_psnr"][-1], 3)
    last = torch.load(run / "checkpoint.pt", weights_only=True)["network"]
    weights = torch.load(shipped / "seed000.pth", weights_only=True)
    assert all(torch.equal(weights[name], last[name]) for name in last)
    summary = json.loads((tmp_path / "record" / "run.json").read_text())
    assert summary["note"] == "stopped once, resumed" and summary["command"] == "train ..."


def test_update_card_adds_the_standard_sets_and_nothing_else(tmp_path):
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    card = {"network": {"kind": "unet", "channels": 4}, "validation_psnr_db": 30.0}
    (shipped / "unet.json").write_text(json.dumps(card))
    results = tmp_path / "standard_sets.json"
    results.write_text(json.dumps({"rows": [
        {"method": "unet", "set": "kodak24", "sigma": 25, "psnr_db": 31.1234},
        {"method": "unet", "set": "cbsd68", "sigma": 25, "psnr_db": 30.5},
        {"method": "cbm3d", "set": "kodak24", "sigma": 25, "psnr_db": 31.7}]}))
    record_main(["--update-card", "unet", "--standard-results", str(results),
                 "--pretrained-dir", str(shipped)])
    updated = json.loads((shipped / "unet.json").read_text())
    assert updated.pop("standard_sets_psnr_db") == {"kodak24": {"25": 31.123},
                                                    "cbsd68": {"25": 30.5}}
    assert updated == card
    try:  # a network the benchmark never ran is refused, and its card left alone
        record_main(["--update-card", "seed000", "--standard-results", str(results),
                     "--pretrained-dir", str(shipped)])
    except SystemExit as refusal:
        assert "seed000" in str(refusal)
    else:
        raise AssertionError("a card without a measured benchmark was accepted")

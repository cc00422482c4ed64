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

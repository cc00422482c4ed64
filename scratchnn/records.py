"""What a training run measures and keeps: validation PSNRs, the history, the run's files.

``Run`` validates after every epoch (and once before the first), appends to the history and
writes, in this order, the best weights, the checkpoint and ``history.json`` with its plot.
Kept apart from the loop in ``scratchnn.train`` so that the loop reads as the algorithm it is.
"""
import io
import json
from pathlib import Path

import torch

from .data import to_float
from .files import (BEST_WEIGHTS_FILE, HISTORY_FILE, PLOT_FILE, save_checkpoint, save_weights,
                    write_atomically)
from .inference import run_network
from .metrics import psnr

# --- validation ----------------------------------------------------------------------------------


def validation_sets(validation):
    """``validation`` as a dict ``{name: (noisy, clean)}``; a bare pair becomes
    ``{"val": pair}``."""
    if validation is None:
        return {}
    if isinstance(validation, dict):
        return dict(validation)
    if isinstance(validation, (tuple, list)) and len(validation) == 2:
        return {"val": tuple(validation)}
    raise ValueError("validation: expected (noisy, clean) images, or a dict of such pairs by name")


def check_validation(validation):
    for name, (noisy, clean) in validation.items():
        if noisy.shape != clean.shape or len(noisy) == 0:
            raise ValueError(f"validation set {name!r}: noisy and clean images must be non-empty "
                             f"and of the same shape, got {tuple(noisy.shape)} and "
                             f"{tuple(clean.shape)}")


def noisy_psnr(noisy, clean):
    """The do-nothing baseline: PSNR of the noisy images themselves."""
    return psnr(to_float(noisy, torch.float64), to_float(clean, torch.float64))


def validation_psnr(stepper, noisy, clean, dtype, pixels_per_batch=64 * 32 * 32):
    """Mean PSNR (dB) of the denoised validation images against the clean ones.

    ``noisy`` holds values 0..255, uint8 or float (unclipped floats too: the standard protocol);
    images of any size go through ``run_network`` (padded to the network's multiple, whole up
    to 512x512), about ``pixels_per_batch`` pixels at a time.
    """
    per_batch = max(1, pixels_per_batch // (noisy.shape[2] * noisy.shape[3]))
    outputs = [run_network(stepper.network, to_float(noisy[start:start + per_batch], dtype),
                           tile=512).clamp(0, 1)
               for start in range(0, len(noisy), per_batch)]
    return psnr(torch.cat(outputs), to_float(clean, dtype))


# --- the history ---------------------------------------------------------------------------------


def save_history_and_plot(out_dir, history, label):
    from .plotting import save_psnr_plot  # matplotlib is only needed when files are written
    write_atomically(Path(out_dir) / HISTORY_FILE, json.dumps(history, indent=1).encode())
    if any(value is not None for value in history["val_psnr"]):
        plot = io.BytesIO()
        save_psnr_plot({label: history}, plot, "png")
        write_atomically(Path(out_dir) / PLOT_FILE, plot.getvalue())


def new_history(baseline_psnr, other_baselines):
    """Per-epoch lists, aligned: entry 0 is the untrained network (no training loss yet).

    ``val_psnr`` is measured on the main validation set (it picks ``best_epoch``);
    ``other_val_psnr`` holds one list per further validation set, by name. The baselines are the
    PSNRs of the noisy images themselves.
    """
    return {"epoch": [], "train_loss": [], "val_psnr": [], "seconds": [], "cpu_seconds": [],
            "baseline_psnr": baseline_psnr,
            "other_val_psnr": {name: [] for name in other_baselines},
            "other_baseline_psnr": dict(other_baselines), "best_epoch": None}


def record_epoch(history, epoch, train_loss, val_psnr, other_val_psnr, seconds, cpu_seconds):
    """Append one epoch; returns True when its main validation PSNR is the best so far."""
    history["epoch"].append(epoch)
    history["train_loss"].append(train_loss)
    history["val_psnr"].append(val_psnr)
    for name, value in other_val_psnr.items():
        history["other_val_psnr"][name].append(value)
    history["seconds"].append(seconds)
    history["cpu_seconds"].append(cpu_seconds)
    best = history["best_epoch"]
    best_psnr = None if best is None else history["val_psnr"][history["epoch"].index(best)]
    if val_psnr is not None and (best_psnr is None or val_psnr > best_psnr):
        history["best_epoch"] = epoch
        return True
    return False


class Run:
    """What one training run measures and records: validation, history, best weights, files.

    Kept apart from the loop in ``train`` so that the loop reads as the algorithm it is.
    """

    def __init__(self, stepper, validation, dtype, out_dir, config, label):
        self.stepper, self.validation, self.dtype = stepper, validation, dtype
        self.out_dir, self.config, self.label = out_dir, config, label
        self.history = None

    def validate(self):
        """PSNR on the main validation set, and on the others by name."""
        psnrs = {name: validation_psnr(self.stepper, noisy, clean, self.dtype)
                 for name, (noisy, clean) in self.validation.items()}
        main = next(iter(psnrs), None)
        return psnrs.pop(main, None), psnrs

    def start(self):
        """Epoch 0: the untrained network, measured and saved."""
        baselines = {name: noisy_psnr(*pair) for name, pair in self.validation.items()}
        main = next(iter(baselines), None)
        self.history = new_history(baselines.pop(main, None), baselines)
        if self.out_dir is not None:
            Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        self.end_epoch(0, None, 0.0, 0.0)

    def end_epoch(self, epoch, loss, seconds, cpu_seconds):
        """Record an epoch; on disk, the best weights first, then the checkpoint and history."""
        improved = record_epoch(self.history, epoch, loss, *self.validate(), seconds, cpu_seconds)
        if self.out_dir is None:
            return
        if improved:  # before the checkpoint: a resumed run never lacks its best weights
            save_weights(Path(self.out_dir) / BEST_WEIGHTS_FILE, self.stepper.weights())
        save_checkpoint(self.out_dir, {"epoch": epoch, "history": self.history,
                                       "config": self.config, **self.stepper.state_dict()})
        save_history_and_plot(self.out_dir, self.history, self.label)

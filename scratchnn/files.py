"""Files of a training run: atomic writes, checkpoints, and weights read back safely.

A run folder (``--out``) holds ``checkpoint.pt`` (everything needed to resume), ``history.json``,
``psnr.png``, ``best.pth`` (the weights of the epoch with the best validation PSNR) and, at the
end, ``network.pth`` (the last epoch's weights). Every file is written *atomically*, so a crash
or a Ctrl-C never leaves half a file, and every tensor file loads with ``weights_only=True``:
reading it can never run code.
"""
import os
import warnings
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
PLOT_FILE = "psnr.png"
WEIGHTS_FILE = "network.pth"
BEST_WEIGHTS_FILE = "best.pth"
RUN_FILES = (CHECKPOINT_FILE, HISTORY_FILE, PLOT_FILE, WEIGHTS_FILE, BEST_WEIGHTS_FILE)


class RunExists(ValueError):
    """The output folder already holds a run, and neither resuming nor overwriting was asked."""


def write_atomically(path, write):
    """Call ``write(temporary_path)``, then rename the file to ``path`` in one step.

    ``os.replace`` within one folder is atomic: a reader (or a resumed run) sees the old file or
    the new one, never a half-written one, even if the process is killed mid-write. If ``write``
    fails, the temporary file is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    # Same folder (a rename across file systems is not atomic); the process id keeps two writers
    # apart; the suffix is kept so that writers that read it (matplotlib, PIL) see the format.
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def check_run_folder(out_dir, resume=False, overwrite=False):
    """Refuse to start a new run over an old one: its checkpoint would be gone at epoch 0.

    ``out_dir`` must be a folder (or not exist yet). If it already holds a run, the caller must
    say what to do with it: ``resume`` it or ``overwrite`` it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a folder for the run's files")
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not (resume or overwrite):
        raise RunExists(f"{out_dir} already holds a training run ({', '.join(existing)}); "
                        f"continue it with --resume (resume=True), or start again and replace it "
                        f"with --overwrite (overwrite=True)")


def save_checkpoint(out_dir, state):
    write_atomically(Path(out_dir) / CHECKPOINT_FILE, lambda path: torch.save(state, path))


def save_weights(path, weights):
    write_atomically(path, lambda temporary: torch.save(weights, temporary))


def load_checkpoint(out_dir):
    """The checkpoint in ``out_dir`` (on the CPU), or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_FILE
    return read_tensor_file(path) if path.exists() else None


def read_tensor_file(path):
    """``torch.load`` with ``weights_only=True``, and one clear error for any file it cannot read.

    A damaged, empty or foreign file fails inside torch in many ways; a file holding Python
    objects other than tensors and containers is refused by ``weights_only``. Either way the
    user learns that this is not a scratchnn file. We never suggest ``weights_only=False``:
    loading an untrusted pickle that way can run arbitrary code.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a checkpoint or weights file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # many failure types: zip errors, unpickling errors, EOF, ...
        raise ValueError(f"{path} is not a scratchnn checkpoint or weights file (it could not be "
                         f"read as one: {type(error).__name__})") from None


def read_network_weights(path):
    """A network's ``state_dict`` from a weights file (``network.pth``, ``best.pth``, a shipped
    model) or from a training checkpoint (``checkpoint.pt``, whose ``"network"`` entry it is)."""
    saved = read_tensor_file(path)
    if isinstance(saved, dict) and isinstance(saved.get("network"), dict):
        saved = saved["network"]
    if not (isinstance(saved, dict) and saved
            and all(isinstance(value, torch.Tensor) for value in saved.values())):
        raise ValueError(f"{path} is not a scratchnn checkpoint or weights file (it holds no "
                         f"network weights)")
    return saved

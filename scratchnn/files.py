"""Files of a training run: atomic writes, checkpoints, and weights read back safely.

A run folder (``--out``) holds ``checkpoint.pt`` (everything needed to resume), ``history.json``,
``psnr.png``, ``best.pth`` (the weights of the epoch with the best validation PSNR) and, at the
end, ``network.pth`` (the last epoch's weights). Every file is written *atomically* and
*durably* (``write_atomically``), so a crash, a Ctrl-C or a power cut never leaves half a file,
and every tensor file loads with ``weights_only=True``: reading it can never run code.
"""
import errno
import io
import math
import os
import stat
import tempfile
import warnings
from pathlib import Path

import torch

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
PLOT_FILE = "psnr.png"
WEIGHTS_FILE = "network.pth"
BEST_WEIGHTS_FILE = "best.pth"
RUN_FILES = (CHECKPOINT_FILE, HISTORY_FILE, PLOT_FILE, WEIGHTS_FILE, BEST_WEIGHTS_FILE)
CHECKPOINT_KEYS = ("epoch", "history", "config", "network", "optimizer")


class RunExists(ValueError):
    """The output folder already holds a run, and neither resuming nor overwriting was asked."""


class CannotWrite(OSError):
    """A file could not be written (a full disk, a folder without write permission, ...).

    Its message names the file the user asked for, never the temporary file behind it.
    """


# --- writing a file safely -----------------------------------------------------------------------


def write_atomically(path, data):
    """Write the bytes ``data`` to a new temporary file beside ``path``, then rename it to
    ``path``.

    * **Atomic.** ``os.replace`` within one folder is atomic: a reader (or a resumed run) sees the
      old file or the new one, never a half-written one, even if the process is killed
      mid-write. If anything fails, the temporary file is removed and ``path`` is left exactly
      as it was.
    * **Not redirectable.** The temporary file gets an unpredictable name and is created
      exclusively (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``), and it is written through the
      descriptor that created it, never opened again by name. So nobody who can write in the
      folder can plant a symbolic link under the temporary name to make us write elsewhere.
    * **Durable.** The bytes reach the disk (``fsync``) before the rename, and the rename after
      it: a power cut cannot leave an empty file under the final name.
    * **Clear failure.** An ``OSError`` (the disk is full, the folder cannot be written) becomes a
      ``CannotWrite`` that names ``path``, not the temporary file, and says what to do.

    The whole content is made in memory first (``tensor_file_bytes``, an encoded image): files
    here are megabytes, and one plain write fails plainly.
    """
    path = Path(path)
    try:  # same folder: a rename across file systems is not atomic
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp")
    except OSError as error:
        raise cannot_write(path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            write_to_disk(file, data)
            set_permissions(file.fileno(), path)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise cannot_write(path, error) from None
    except BaseException:  # Ctrl-C, SIGTERM: leave nothing behind
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def write_to_disk(file, data):
    """Write ``data`` and wait until it is on the disk, not only in the system's cache."""
    file.write(data)
    file.flush()
    os.fsync(file.fileno())


def tensor_file_bytes(value):
    """The bytes ``torch.save`` writes for ``value``, made in memory.

    Why not let ``torch.save`` write the file itself: its writer calls back into Python for
    every piece, and an error there (a full disk, Ctrl-C) comes out as a RuntimeError from deep
    inside torch ("unexpected pos ...") instead of the error it was.
    """
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def set_permissions(descriptor, path):
    """Give the new file the permissions ``open()`` would have given it (mkstemp gives 0600):
    those of the file it replaces, or read-write for everyone the umask allows."""
    if not hasattr(os, "fchmod"):  # Windows: no POSIX permissions to set
        return
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)  # the only way to read the umask is to set it
        os.umask(umask)
        mode = 0o666 & ~umask
    os.fchmod(descriptor, mode)


def sync_folder(folder):
    """Make a rename in ``folder`` durable: on POSIX the folder's list of names is data too.

    Best effort: some file systems refuse ``fsync`` on a folder, and by then the file is
    already complete under its final name.
    """
    if os.name != "posix":
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass


# What to do about the usual causes of a failed write, by the errno's name.
ADVICE = {"ENOSPC": "the disk is full: free some space",
          "EDQUOT": "the disk quota is used up: free some space",
          "EACCES": "no permission to write there: choose another folder",
          "EPERM": "no permission to write there: choose another folder",
          "EROFS": "the file system is read-only: choose another folder",
          "ENOENT": "its folder does not exist: create it first"}


def cannot_write(path, error):
    """A ``CannotWrite`` for ``path``: the cause in words, and what to do about it."""
    cause = error.strerror or str(error)
    advice = ADVICE.get(errno.errorcode.get(error.errno))
    return CannotWrite(error.errno, f"cannot write {path}: {cause}"
                                    + (f" ({advice})" if advice else ""))


def nearest_existing_folder(path):
    """``path`` itself if it exists, else the closest of its parents that does."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_can_write_in(folder, what):
    """Refuse at once when files cannot be created in ``folder`` (made if missing).

    ``what`` names the folder in the message (``"--out runs/a"``). Checked before any work, so
    that a read-only folder is found in a second, not after an hour of computing. (``os.access``
    asks the operating system; for root it only fails on a read-only file system.)
    """
    existing = nearest_existing_folder(folder)
    if not existing.is_dir():
        raise NotADirectoryError(f"{what}: {existing} is a file, so no folder can be made "
                                 f"inside it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write into {existing} (no permission, or a "
                              f"read-only file system); choose another folder")


# --- the run folder ------------------------------------------------------------------------------


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


def remove_old_run(out_dir):
    """Delete the files of the run in ``out_dir`` (what ``--overwrite`` replaces); returns their
    names.

    Done before the new run starts, so that the folder never holds the old run's
    ``network.pth`` or ``best.pth`` beside the new run's checkpoint, and an interrupted new run
    never looks like the old one. Temporary files that a killed writer left are removed too;
    any other file in the folder is left alone.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    removed = []
    for name in RUN_FILES:
        for path in [out_dir / name, *out_dir.glob(f".{name}.*.tmp")]:
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path.name)
    return removed


# --- checkpoints and weights ---------------------------------------------------------------------


def save_checkpoint(out_dir, state):
    write_atomically(Path(out_dir) / CHECKPOINT_FILE, tensor_file_bytes(state))


def save_weights(path, weights):
    write_atomically(path, tensor_file_bytes(weights))


def load_checkpoint(out_dir):
    """The checkpoint in ``out_dir`` (on the CPU), or None when there is none.

    A file that is not a training checkpoint (another program's ``checkpoint.pt``, a weights
    file renamed) is refused with a ``ValueError`` that names it.
    """
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    checkpoint = read_tensor_file(path)
    missing = [key for key in CHECKPOINT_KEYS
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing or not isinstance(checkpoint["epoch"], int):
        raise ValueError(f"{path} is not a scratchnn training checkpoint (it has no "
                         f"{', '.join(repr(key) for key in missing) or 'whole epoch number'}), "
                         f"so it cannot be resumed; move it away, or choose another --out")
    return checkpoint


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
    model) or from a training checkpoint (``checkpoint.pt``, whose ``"network"`` entry it is).

    Weights that are NaN or infinite (saved by a run that diverged) are refused: they would
    turn every image black without a word.
    """
    saved = read_tensor_file(path)
    if isinstance(saved, dict) and isinstance(saved.get("network"), dict):
        saved = saved["network"]
    if not (isinstance(saved, dict) and saved
            and all(isinstance(value, torch.Tensor) for value in saved.values())):
        raise ValueError(f"{path} is not a scratchnn checkpoint or weights file (it holds no "
                         f"network weights)")
    check_finite_weights(saved, path)
    return saved


def check_finite_weights(weights, path):
    """Raise a ``ValueError`` naming the first weight tensor that holds NaN or infinity."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = tensor[~torch.isfinite(tensor)].flatten()[0].item()
            value = "NaN" if math.isnan(bad) else "infinite"
            raise ValueError(f"{path} holds {value} weights (in {name!r}): the training that "
                             f"saved them diverged; use the run's best.pth or an earlier "
                             f"checkpoint")

"""The training loop shared by the command line, the course's ``Model`` and the book.

One loop trains either a from-scratch network (``scratchnn.nn``) or its ``torch.nn`` twin: a tiny
adapter (a "stepper") hides the one difference, how a training step computes gradients. With the
same seed both see the same mini-batches in the same order, so their curves can be compared.

What the loop guarantees:

* **Reproducible order.** The shuffle of epoch ``k`` is a pure function of ``(seed, k)``: an
  interrupted run can be resumed and sees exactly the batches it would have seen.
* **Nothing lost.** After every epoch (and once before the first) the network, the optimizer's
  state (momentum or Adam's running averages), the epoch and the history are written to
  ``checkpoint.pt`` *atomically*: to a temporary file first, then renamed over the old one, so a crash
  never leaves half a file. ``resume=True`` continues from it.
* **Clear failure.** A NaN or infinite loss raises ``TrainingDiverged``; the last checkpoint, written
  before things went wrong, is kept.
* **Safe files.** Checkpoints hold only tensors, dicts, lists, numbers and strings, so they load
  with ``torch.load(path, weights_only=True)``.
"""
import json
import math
import os
import time
from pathlib import Path

import torch

from . import nn
from .data import to_float
from .metrics import psnr

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
PLOT_FILE = "psnr.png"
WEIGHTS_FILE = "network.pth"

DEFAULT_LEARNING_RATES = {"sgd": 0.1, "adam": 1e-3}


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or infinite; training cannot go on from here."""


# --- optimizers ----------------------------------------------------------------------------------


def is_torch_network(network):
    """True for a ``torch.nn`` network (the reference twin), False for a from-scratch one."""
    return isinstance(network, torch.nn.Module)


def make_optimizer(network, name="adam", lr=None, momentum=0.0):
    """SGD or Adam for ``network``, from the network's own framework.

    ``lr=None`` takes a default that works for an MSE averaged over N*C*H*W elements (whose
    gradients are tiny, so plain SGD needs a large step): 0.1 for SGD, 1e-3 for Adam.
    """
    if name not in DEFAULT_LEARNING_RATES:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(DEFAULT_LEARNING_RATES)}")
    lr = DEFAULT_LEARNING_RATES[name] if lr is None else lr
    if name == "adam" and momentum:
        raise ValueError("momentum is an SGD setting; Adam has its own running averages (betas)")
    if is_torch_network(network):
        if name == "sgd":
            return torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum)
        return torch.optim.Adam(network.parameters(), lr=lr)
    if name == "sgd":
        return nn.SGD(network.param(), lr=lr, momentum=momentum)
    return nn.Adam(network.param(), lr=lr)


def learning_rate(optimizer):
    """The learning rate of a from-scratch or a ``torch.optim`` optimizer."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer.param_groups[0]["lr"]
    return optimizer.lr


def scratch_optimizer_state_dict(optimizer):
    """The state of a from-scratch SGD or Adam, enough to resume it exactly.

    Written here, outside ``scratchnn.nn``, from the optimizer's attributes: SGD's momentum buffers
    (``velocities``, ``None`` before the first step) and Adam's step count and running averages.
    """
    state = {"kind": type(optimizer).__name__, "lr": optimizer.lr}
    if isinstance(optimizer, nn.SGD):
        state["velocities"] = [None if v is None else v.clone() for v in optimizer.velocities]
    elif isinstance(optimizer, nn.Adam):
        state.update(steps=optimizer.steps, means=[m.clone() for m in optimizer.means],
                     squares=[s.clone() for s in optimizer.squares])
    else:
        raise ValueError(f"cannot save the state of a {type(optimizer).__name__}")
    return state


def load_scratch_optimizer_state_dict(optimizer, state):
    """Put a state from ``scratch_optimizer_state_dict`` back into a from-scratch optimizer."""
    if state["kind"] != type(optimizer).__name__:
        raise ValueError(f"the saved optimizer is {state['kind']}, this one is {type(optimizer).__name__}")
    optimizer.lr = state["lr"]
    if isinstance(optimizer, nn.SGD):
        optimizer.velocities = [None if v is None else v.to(parameter.device, parameter.dtype)
                                for v, (parameter, _) in zip(state["velocities"], optimizer.params)]
    else:
        optimizer.steps = state["steps"]
        for mine, saved in zip(optimizer.means + optimizer.squares, state["means"] + state["squares"]):
            mine.copy_(saved)


# --- the adapter: one training step in either framework ------------------------------------------


class ScratchStepper:
    """A from-scratch network, its optimizer and the MSE loss: forward, backward by hand, update."""

    def __init__(self, network, optimizer):
        live = [parameter for parameter, _ in network.param()]
        if any(mine is not theirs for (mine, _), theirs in zip(optimizer.params, live)):
            raise ValueError("the optimizer does not hold this network's parameters (was the network "
                             "moved with .to() after the optimizer was made? make the optimizer after)")
        self.network, self.optimizer, self.loss = network, optimizer, nn.MSE()

    def step(self, inputs, targets):
        """One gradient step on a mini-batch; returns the batch's loss (a 0-d tensor)."""
        self.optimizer.zero_grad()
        loss = self.loss.forward(self.network.forward(inputs), targets)
        self.network.backward(self.loss.backward())
        self.optimizer.step()
        return loss

    def forward(self, inputs):
        return self.network.forward(inputs)

    def state_dict(self):
        return {"network": {name: tensor.clone() for name, tensor in self.network.state_dict().items()},
                "optimizer": scratch_optimizer_state_dict(self.optimizer)}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        load_scratch_optimizer_state_dict(self.optimizer, state["optimizer"])

    def parameters(self):
        return [parameter for parameter, _ in self.network.param()]


class TorchStepper:
    """The ``torch.nn`` twin, its ``torch.optim`` optimizer and ``MSELoss``: autograd does backward."""

    def __init__(self, network, optimizer):
        self.network, self.optimizer, self.loss = network, optimizer, torch.nn.MSELoss()

    def step(self, inputs, targets):
        self.optimizer.zero_grad()
        loss = self.loss(self.network(inputs), targets)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def forward(self, inputs):
        with torch.no_grad():
            return self.network(inputs)

    def state_dict(self):
        return {"network": {name: tensor.clone() for name, tensor in self.network.state_dict().items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])

    def parameters(self):
        return [parameter.detach() for parameter in self.network.parameters()]


def make_stepper(network, optimizer="adam", lr=None, momentum=0.0):
    """The adapter for ``network``; ``optimizer`` is a name (``"sgd"``/``"adam"``) or an optimizer."""
    if isinstance(optimizer, str):
        optimizer = make_optimizer(network, optimizer, lr, momentum)
    stepper = TorchStepper if is_torch_network(network) else ScratchStepper
    return stepper(network, optimizer)


# --- data, order, validation ---------------------------------------------------------------------


def resolve_device(device="auto"):
    """``"auto"`` means the GPU when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no GPU (use 'auto' or 'cpu')")
    return device


def epoch_permutation(num_samples, seed, epoch):
    """The order of the samples in epoch ``epoch``: depends on ``(seed, epoch)`` and nothing else.

    A fresh generator per epoch (instead of one generator running through the whole run) is what
    lets a resumed run reproduce the order without saving any random-number-generator state.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


def predict_in_batches(stepper, images, dtype, batch_size=64):
    """The network's outputs (floats in [0, 1]) for uint8 images, a batch at a time."""
    outputs = [stepper.forward(to_float(images[start:start + batch_size], dtype))
               for start in range(0, len(images), batch_size)]
    return torch.cat(outputs)


def validation_psnr(stepper, noisy, clean, dtype):
    """Mean PSNR (dB) of the denoised validation images against the clean ones."""
    denoised = predict_in_batches(stepper, noisy, dtype).clamp(0, 1)
    return psnr(denoised, to_float(clean, dtype))


# --- files: checkpoints, history, plot -----------------------------------------------------------


def write_atomically(path, write):
    """Call ``write(temporary_path)``, then rename the file to ``path`` in one step.

    ``os.replace`` within one folder is atomic: a reader (or a resumed run) sees the old file or
    the new one, never a half-written one, even if the process is killed mid-write.
    """
    path = Path(path)
    # Same folder (a rename across file systems is not atomic); the process id keeps two writers apart.
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(out_dir, stepper, epoch, history, config):
    checkpoint = {"epoch": epoch, "history": history, "config": config, **stepper.state_dict()}
    write_atomically(Path(out_dir) / CHECKPOINT_FILE, lambda path: torch.save(checkpoint, path))


def load_checkpoint(out_dir):
    """The checkpoint in ``out_dir`` (on the CPU), or None when there is none."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_history_and_plot(out_dir, history, label):
    from .plotting import save_psnr_plot  # matplotlib is only needed when files are written
    text = json.dumps(history, indent=1)
    write_atomically(Path(out_dir) / HISTORY_FILE, lambda path: Path(path).write_text(text))
    if any(value is not None for value in history["val_psnr"]):
        write_atomically(Path(out_dir) / PLOT_FILE, lambda path: save_psnr_plot({label: history}, path))


def new_history(baseline_psnr):
    """Per-epoch lists, aligned: entry 0 is the untrained network (no training loss yet)."""
    return {"epoch": [], "train_loss": [], "val_psnr": [], "seconds": [], "baseline_psnr": baseline_psnr}


def record_epoch(history, epoch, train_loss, val_psnr, seconds):
    history["epoch"].append(epoch)
    history["train_loss"].append(train_loss)
    history["val_psnr"].append(val_psnr)
    history["seconds"].append(seconds)


def check_same_run(saved, current):
    """A checkpoint may only be resumed by the run that made it (the number of epochs may grow)."""
    ignore = {"num_epochs"}
    differences = {key: (saved.get(key), current.get(key)) for key in set(saved) | set(current)
                   if key not in ignore and saved.get(key) != current.get(key)}
    if differences:
        details = ", ".join(f"{key}: saved {old!r}, now {new!r}" for key, (old, new) in sorted(differences.items()))
        raise ValueError(f"cannot resume: the checkpoint was made with different settings ({details})")


# --- the loop ------------------------------------------------------------------------------------


def progress_disabled(progress):
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


def progress_bar(iterable, description, progress):
    """A tqdm bar: a widget in a notebook, text in a terminal, and a silent pass-through when off.

    ``tqdm.auto`` is imported only when the bar is shown: without ipywidgets it warns on stderr.
    """
    if progress_disabled(progress):
        from tqdm import tqdm
        return tqdm(iterable, disable=True)
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=description, leave=False)


def train_one_epoch(stepper, inputs, targets, order, batch_size, dtype, description, progress):
    """One pass over the data in the given order; returns the mean training loss per sample."""
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    starts = range(0, len(order), batch_size)
    bar = progress_bar(starts, description, progress)
    for number, start in enumerate(bar, 1):
        chosen = order[start:start + batch_size]
        loss = stepper.step(to_float(inputs[chosen], dtype), to_float(targets[chosen], dtype))
        total += loss.to(torch.float64) * len(chosen)
        if number % 50 == 0 or number == len(starts):  # reading the loss waits for the GPU: not every step
            running = total.item() / min(start + batch_size, len(order))
            if not math.isfinite(running):
                bar.close()
                raise TrainingDiverged(f"the training loss became {running} by batch {number}")
            bar.set_postfix(loss=f"{running:.5f}")
    bar.close()
    return total.item() / len(order)


def check_parameters_finite(stepper):
    for parameter in stepper.parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingDiverged("a parameter became NaN or infinite")


def train(network, train_input, train_target, num_epochs, *, val_input=None, val_target=None,
          optimizer="adam", lr=None, momentum=0.0, batch_size=16, device="auto", dtype=torch.float32,
          seed=0, out_dir=None, resume=False, callbacks=(), progress=True, label="scratchnn",
          config=None):
    """Train ``network`` to map ``train_input`` to ``train_target``; returns the history.

    Inputs and targets are (N, 3, H, W) images with values 0..255 (uint8 or float): for Noise2Noise,
    two noisy copies of the same images. ``num_epochs`` counts the whole run: resuming a run that
    finished epoch 3 with ``num_epochs=5`` trains epochs 4 and 5.

    The network (from-scratch or ``torch.nn``) is moved to ``device`` and ``dtype``; ``optimizer``
    is ``"sgd"`` or ``"adam"`` (made with ``lr`` and ``momentum``), or an optimizer already made for
    the moved network. With ``out_dir``, every epoch writes ``checkpoint.pt``, ``history.json``
    and ``psnr.png`` there, and the end writes the weights alone to ``network.pth``. Each callback
    is called as ``callback(epoch, history)`` after every epoch. ``config`` is any extra
    description of the run (data, network) stored with the checkpoint and checked on resume.
    """
    if not (isinstance(num_epochs, int) and num_epochs >= 0 and isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"expected num_epochs >= 0 and batch_size >= 1 (ints), got {num_epochs!r} and {batch_size!r}")
    device = resolve_device(device)
    network.to(device=device, dtype=dtype)
    stepper = make_stepper(network, optimizer, lr, momentum)
    inputs, targets = train_input.to(device), train_target.to(device)
    if inputs.shape != targets.shape or len(inputs) == 0:
        raise ValueError(f"train_input and train_target must be non-empty and of the same shape, "
                         f"got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    has_validation = val_input is not None
    if has_validation != (val_target is not None):
        raise ValueError("give both val_input and val_target (noisy and clean validation images), or neither")
    if has_validation:
        val_input, val_target = val_input.to(device), val_target.to(device)
    config = {**(config or {}), "seed": seed, "batch_size": batch_size, "num_train": len(inputs),
              "optimizer": type(stepper.optimizer).__name__, "lr": learning_rate(stepper.optimizer),
              "momentum": momentum,
              "framework": "torch" if is_torch_network(network) else "scratchnn", "dtype": str(dtype),
              "num_epochs": num_epochs}

    checkpoint = load_checkpoint(out_dir) if (out_dir and resume) else None
    if checkpoint is not None:
        check_same_run(checkpoint["config"], config)
        stepper.load_state_dict(checkpoint)
        first_epoch, history = checkpoint["epoch"] + 1, checkpoint["history"]
    else:
        baseline = psnr(to_float(val_input, torch.float64), to_float(val_target, torch.float64)) \
            if has_validation else None
        history = new_history(baseline)
        start_psnr = validation_psnr(stepper, val_input, val_target, dtype) if has_validation else None
        record_epoch(history, 0, None, start_psnr, 0.0)
        first_epoch = 1
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            save_checkpoint(out_dir, stepper, 0, history, config)
            save_history_and_plot(out_dir, history, label)

    for epoch in range(first_epoch, num_epochs + 1):
        started = time.perf_counter()
        order = epoch_permutation(len(inputs), seed, epoch).to(device)
        try:
            loss = train_one_epoch(stepper, inputs, targets, order, batch_size, dtype,
                                   f"epoch {epoch}/{num_epochs}", progress)
            check_parameters_finite(stepper)
        except TrainingDiverged as error:
            kept = f"; the last good checkpoint (epoch {epoch - 1}) is kept in {out_dir}" if out_dir else ""
            raise TrainingDiverged(f"training diverged in epoch {epoch}: {error}. The learning rate "
                                   f"{config['lr']} is probably too large{kept}") from None
        val = validation_psnr(stepper, val_input, val_target, dtype) if has_validation else None
        record_epoch(history, epoch, loss, val, time.perf_counter() - started)
        if out_dir:
            save_checkpoint(out_dir, stepper, epoch, history, config)
            save_history_and_plot(out_dir, history, label)
        for callback in callbacks:
            callback(epoch, history)

    if out_dir:
        weights = stepper.state_dict()["network"]
        write_atomically(Path(out_dir) / WEIGHTS_FILE, lambda path: torch.save(weights, path))
    return history

"""The training loop shared by the command line, the course's ``Model`` and the book.

One loop trains either a from-scratch network (``scratchnn.nn``) or its ``torch.nn`` twin: a tiny
adapter (a "stepper") hides the one difference, how a training step computes gradients. With the
same seed both see the same mini-batches in the same order, so their curves can be compared.

What the loop guarantees:

* **Reproducible order.** The shuffle of epoch ``k`` is a pure function of ``(seed, k)``: an
  interrupted run can be resumed and sees exactly the batches it would have seen.
* **Nothing lost.** After every epoch (and once before the first) the network, the optimizer's
  state (momentum or Adam's running averages), the epoch and the history are written to
  ``checkpoint.pt`` atomically (``scratchnn.files``), so a crash never leaves half a file;
  ``resume=True`` continues from it. A folder holding another run is never overwritten unasked.
* **Clear failure.** A NaN or infinite loss raises ``TrainingDiverged``; the last checkpoint,
  written before things went wrong, is kept.
* **Safe files.** Checkpoints hold only tensors, dicts, lists, numbers and strings, so they load
  with ``torch.load(path, weights_only=True)``.
* **Many processes, one run.** Under ``torchrun`` (``scratchnn.distributed``, chapter 10) each
  process trains on its shard of every mini-batch and the gradients are combined before each
  step, so W processes train the network one process would; only process 0 validates and
  writes files.
"""
import json
import math
import os
import time
from pathlib import Path

import torch

from . import distributed, nn
from .data import to_float
from .files import (BEST_WEIGHTS_FILE, HISTORY_FILE, PLOT_FILE, WEIGHTS_FILE, check_run_folder,
                    load_checkpoint, save_checkpoint, save_weights, write_atomically)
from .metrics import psnr
from .settings import TrainSettings, optimizer_kind


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or infinite; training cannot go on from here."""


# --- optimizers ----------------------------------------------------------------------------------


def is_torch_network(network):
    """True for a ``torch.nn`` network (the reference twin), False for a from-scratch one."""
    return isinstance(network, torch.nn.Module)


def make_optimizer(network, name="adam", lr=None, momentum=0.0):
    """The optimizer ``name`` (a key of ``settings.OPTIMIZERS``) for ``network``, taken from the
    network's own framework: ``scratchnn.nn`` for a from-scratch network, ``torch.optim`` for
    its twin. ``lr=None`` takes the optimizer's default learning rate."""
    kind = optimizer_kind(name)
    lr = kind.default_lr if lr is None else lr
    options = {"momentum": momentum} if kind.has_momentum else {}
    if momentum and not kind.has_momentum:
        raise ValueError(f"momentum is an SGD setting; {name} has its own running averages")
    if is_torch_network(network):
        return kind.torch(network.parameters(), lr=lr, **options)
    return kind.scratch(network.param(), lr=lr, **options)


def learning_rate(optimizer):
    """The learning rate of a from-scratch or a ``torch.optim`` optimizer."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer.param_groups[0]["lr"]
    return optimizer.lr


# --- the adapter: one training step in either framework ------------------------------------------


class ScratchStepper:
    """A from-scratch network, its optimizer and the MSE loss: forward, backward by hand,
    update.

    ``reduce_gradients(gradients, count)``, when given, is called between the backward pass and
    the update: data-parallel training (chapter 10) combines there the gradients of every
    process's shard of the batch (``scratchnn.distributed.all_reduce_gradients``).
    """

    def __init__(self, network, optimizer, reduce_gradients=None):
        live = [parameter for parameter, _ in network.param()]
        if any(mine is not theirs for (mine, _), theirs in zip(optimizer.params, live)):
            raise ValueError("the optimizer does not hold this network's parameters (was it "
                             "made for another network?)")
        self.network, self.optimizer, self.loss = network, optimizer, nn.MSE()
        self.reduce_gradients = reduce_gradients

    def step(self, inputs, targets):
        """One gradient step on a mini-batch; returns the batch's loss (a 0-d tensor).

        In data-parallel training the mini-batch is this process's shard of the global batch,
        and it may hold no sample at all: its gradients are then zero.
        """
        self.optimizer.zero_grad()
        loss = inputs.new_zeros(())
        if len(inputs):
            loss = self.loss.forward(self.network.forward(inputs), targets)
            self.network.backward(self.loss.backward())
        if self.reduce_gradients is not None:
            self.reduce_gradients(self.gradients(), len(inputs))
        self.optimizer.step()
        return loss

    def forward(self, inputs):
        return self.network.forward(inputs)

    def weights(self):
        """A copy of the network's parameters by name: what ``network.pth`` holds."""
        return {name: tensor.clone() for name, tensor in self.network.state_dict().items()}

    def state_dict(self):
        return {"network": self.weights(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])

    def parameters(self):
        return [parameter for parameter, _ in self.network.param()]

    def gradients(self):
        """The live gradient tensors, in the order of ``parameters()``."""
        return [gradient for _, gradient in self.network.param()]


class TorchStepper:
    """The ``torch.nn`` twin, its ``torch.optim`` optimizer and ``MSELoss``: autograd does the
    backward pass. ``reduce_gradients`` as for ``ScratchStepper``."""

    def __init__(self, network, optimizer, reduce_gradients=None):
        self.network, self.optimizer, self.loss = network, optimizer, torch.nn.MSELoss()
        self.reduce_gradients = reduce_gradients

    def step(self, inputs, targets):
        self.optimizer.zero_grad()
        loss = inputs.new_zeros(())
        if len(inputs):
            loss = self.loss(self.network(inputs), targets)
            loss.backward()
        if self.reduce_gradients is not None:
            self.reduce_gradients(self.gradients(), len(inputs))
        self.optimizer.step()
        return loss.detach()

    def forward(self, inputs):
        with torch.no_grad():
            return self.network(inputs)

    def weights(self):
        """A copy of the network's parameters by name: what ``network.pth`` holds."""
        return {name: tensor.clone() for name, tensor in self.network.state_dict().items()}

    def state_dict(self):
        return {"network": self.weights(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])

    def parameters(self):
        return [parameter.detach() for parameter in self.network.parameters()]

    def gradients(self):
        """Every parameter's ``.grad``, in the order of ``parameters()``; zeros where no
        backward pass made one (``zero_grad`` leaves ``None``)."""
        for parameter in self.network.parameters():
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        return [parameter.grad for parameter in self.network.parameters()]


def make_stepper(network, optimizer="adam", lr=None, momentum=0.0, reduce_gradients=None):
    """The adapter for ``network``; ``optimizer`` is a name (``"sgd"``, ``"adam"``) or an
    optimizer already made for the network."""
    if isinstance(optimizer, str):
        optimizer = make_optimizer(network, optimizer, lr, momentum)
    stepper = TorchStepper if is_torch_network(network) else ScratchStepper
    return stepper(network, optimizer, reduce_gradients)


# --- data, order, validation ---------------------------------------------------------------------


def resolve_device(device="auto"):
    """``"auto"`` means the GPU when there is one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no GPU "
                         "(use 'auto' or 'cpu')")
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


def noisy_psnr(noisy, clean):
    """The do-nothing baseline: PSNR of the noisy images themselves."""
    return psnr(to_float(noisy, torch.float64), to_float(clean, torch.float64))


def validation_psnr(stepper, noisy, clean, dtype):
    """Mean PSNR (dB) of the denoised validation images against the clean ones."""
    denoised = predict_in_batches(stepper, noisy, dtype).clamp(0, 1)
    return psnr(denoised, to_float(clean, dtype))


# --- the run's record: history and plot ----------------------------------------------------------


def save_history_and_plot(out_dir, history, label):
    from .plotting import save_psnr_plot  # matplotlib is only needed when files are written
    text = json.dumps(history, indent=1)
    write_atomically(Path(out_dir) / HISTORY_FILE, lambda path: Path(path).write_text(text))
    if any(value is not None for value in history["val_psnr"]):
        write_atomically(Path(out_dir) / PLOT_FILE,
                         lambda path: save_psnr_plot({label: history}, path))


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


def check_same_run(saved, current):
    """A checkpoint may only be resumed by the run that made it. The number of epochs may grow,
    and the number of processes may change: with the same global batch, W processes train the
    network one process would (chapter 10)."""
    ignore = {"num_epochs", "world_size"}
    differences = {key: (saved.get(key), current.get(key)) for key in set(saved) | set(current)
                   if key not in ignore and saved.get(key) != current.get(key)}
    if differences:
        details = ", ".join(f"{key}: saved {old!r}, now {new!r}"
                            for key, (old, new) in sorted(differences.items()))
        raise ValueError(f"cannot resume: the checkpoint was made with different settings "
                         f"({details})")


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
    """One pass over the data in the given order; returns the mean training loss per sample.

    In data-parallel training (chapter 10) each process steps on its own shard of every batch,
    and the loss sums of all processes are added up: every process sees the same mean, and so
    all of them stop together if it is not finite.
    """
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    starts = range(0, len(order), batch_size)
    bar = progress_bar(starts, description, progress)
    for number, start in enumerate(bar, 1):
        chosen = distributed.my_shard(order[start:start + batch_size])  # alone: the whole batch
        loss = stepper.step(to_float(inputs[chosen], dtype), to_float(targets[chosen], dtype))
        total += loss.to(torch.float64) * len(chosen)
        # Reading the loss waits for the GPU to finish its queue: only every 50 batches.
        if number % 50 == 0 or number == len(starts):
            summed = distributed.sum_over_processes(total).item()
            running = summed / min(start + batch_size, len(order))
            if not math.isfinite(running):
                bar.close()
                raise TrainingDiverged(f"the training loss became {running} by batch {number}")
            bar.set_postfix(loss=f"{running:.5f}")
    bar.close()
    return distributed.sum_over_processes(total).item() / len(order)


def check_parameters_finite(stepper):
    for parameter in stepper.parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingDiverged("a parameter became NaN or infinite")


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


def check_training_data(inputs, targets, validation):
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError("train_input and train_target must be tensors of images")
    if inputs.shape != targets.shape or len(inputs) == 0:
        raise ValueError(f"train_input and train_target must be non-empty and of the same shape, "
                         f"got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    for name, (noisy, clean) in validation.items():
        if noisy.shape != clean.shape or len(noisy) == 0:
            raise ValueError(f"validation set {name!r}: noisy and clean images must be non-empty "
                             f"and of the same shape, got {tuple(noisy.shape)} and "
                             f"{tuple(clean.shape)}")


def train(network, train_input, train_target, num_epochs, *, settings=None, optimizer=None,
          validation=None, out_dir=None, resume=False, overwrite=False, callbacks=(),
          progress=True, config=None):
    """Train ``network`` to map ``train_input`` to ``train_target``; returns the history.

    * Inputs and targets are (N, 3, H, W) images with values 0..255 (uint8 or float): for
      Noise2Noise, two noisy copies of the same images. ``num_epochs`` counts the whole run:
      resuming a run that finished epoch 3 with ``num_epochs=5`` trains epochs 4 and 5.
    * ``settings`` (a ``TrainSettings``) says how to optimise; the network, from-scratch or
      ``torch.nn``, is moved to its device and dtype. ``optimizer`` is an optimizer already made
      for the moved network (the course's ``Model`` keeps one across calls); by default one is
      made from ``settings``.
    * ``validation`` is ``(noisy, clean)`` images, or a dict of them by name: the first set picks
      the best epoch, every set is measured after every epoch.
    * With ``out_dir``, every epoch writes ``checkpoint.pt``, ``history.json``, ``psnr.png`` and,
      when validation improves, ``best.pth``; the end writes ``network.pth``. A folder that
      already holds a run is refused unless ``resume`` (continue it) or ``overwrite``.
    * Each callback is called as ``callback(epoch, history)`` after every epoch. ``config`` is
      any extra description of the run (data, network), stored with the checkpoint and checked
      on resume.
    * Data-parallel training (chapter 10): in a process that joined a ``torch.distributed``
      group (``scratchnn.distributed.start``, as ``python -m scratchnn train`` does under
      ``torchrun``), every process calls ``train`` with the same arguments. The batch size of
      ``settings`` is the *global* batch, shared out among the processes, whose gradients are
      combined before every step: W processes train the network one process would. Every
      process reads the checkpoint to resume (so ``out_dir`` must be a folder they all see);
      only process 0 validates, shows progress and writes files, and only its history holds
      the validation PSNRs (the others return their training losses).
    """
    settings = settings or TrainSettings()
    if not (isinstance(num_epochs, int) and not isinstance(num_epochs, bool) and num_epochs >= 0):
        raise ValueError(f"expected num_epochs to be an int >= 0, got {num_epochs!r}")
    validation = validation_sets(validation)
    check_training_data(train_input, train_target, validation)
    if out_dir is not None:  # in every process, before process 0 may write anything
        check_run_folder(out_dir, resume, overwrite)
    device, dtype = resolve_device(settings.device), settings.dtype
    network.to(device=device, dtype=dtype)
    reduce_gradients = distributed.all_reduce_gradients if distributed.world_size() > 1 else None
    stepper = make_stepper(network, optimizer or settings.optimizer, settings.lr,
                           settings.momentum, reduce_gradients)
    inputs, targets = train_input.to(device), train_target.to(device)
    validation = {name: (noisy.to(device), clean.to(device))
                  for name, (noisy, clean) in validation.items()}
    framework = "torch" if is_torch_network(network) else "scratchnn"
    config = {**(config or {}), "seed": settings.seed, "batch_size": settings.batch_size,
              "num_train": len(inputs), "optimizer": type(stepper.optimizer).__name__,
              "lr": learning_rate(stepper.optimizer), "momentum": settings.momentum,
              "framework": framework, "dtype": str(dtype), "num_epochs": num_epochs,
              "world_size": distributed.world_size()}

    checkpoint = load_checkpoint(out_dir) if (out_dir is not None and resume) else None
    if checkpoint is not None:
        check_same_run(checkpoint["config"], config)
        stepper.load_state_dict(checkpoint)
    # Every replica starts from process 0's weights. Past the barrier, every process has checked
    # the run folder and read the checkpoint: process 0 may write.
    distributed.broadcast_parameters(stepper.parameters())
    distributed.barrier()
    if not distributed.is_main_process():
        validation, out_dir, progress = {}, None, False  # only process 0 validates and writes
    run = Run(stepper, validation, dtype, out_dir, config, label=framework)
    if checkpoint is not None:
        first_epoch, run.history = checkpoint["epoch"] + 1, checkpoint["history"]
    else:
        run.start()
        first_epoch = 1

    for epoch in range(first_epoch, num_epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        order = epoch_permutation(len(inputs), settings.seed, epoch).to(device)
        try:
            loss = train_one_epoch(stepper, inputs, targets, order, settings.batch_size, dtype,
                                   f"epoch {epoch}/{num_epochs}", progress)
            check_parameters_finite(stepper)
        except TrainingDiverged as error:
            kept = (f"; the last good checkpoint (epoch {epoch - 1}) is kept in {out_dir}"
                    if out_dir is not None else "")
            raise TrainingDiverged(f"training diverged in epoch {epoch}: {error}. The learning "
                                   f"rate {config['lr']} is probably too large{kept}") from None
        run.end_epoch(epoch, loss, time.perf_counter() - started,
                      time.process_time() - cpu_started)
        for callback in callbacks:
            callback(epoch, run.history)

    if out_dir is not None:
        save_weights(Path(out_dir) / WEIGHTS_FILE, stepper.weights())
    return run.history


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

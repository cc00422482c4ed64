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
import io
import json
import math
import time
from pathlib import Path

import torch

from . import distributed, nn
from .data import FreshPairs, to_float
from .files import (BEST_WEIGHTS_FILE, HISTORY_FILE, PLOT_FILE, WEIGHTS_FILE, check_run_folder,
                    load_checkpoint, remove_old_run, save_checkpoint, save_weights,
                    write_atomically)
from .inference import run_network
from .metrics import psnr
from .progress import progress_bar
from .settings import LR_SCHEDULES, TrainSettings, optimizer_kind


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


def set_learning_rate(optimizer, lr):
    """Change the learning rate of a from-scratch or a ``torch.optim`` optimizer."""
    if isinstance(optimizer, torch.optim.Optimizer):
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        optimizer.lr = lr


def scheduled_learning_rate(schedule, base_lr, step, total_steps):
    """The learning rate of step ``step`` (0-based) of a run of ``total_steps``.

    * ``constant``: ``base_lr`` throughout;
    * ``cosine``: from ``base_lr`` down to 0 along half a cosine;
    * ``rampdown``: the Noise2Noise code's: constant, then over the last 30% of the steps down
      to 0 along a squared half-cosine, ``base_lr * ((1 + cos(pi t)) / 2) ** 2`` with t from 0
      to 1.

    A pure function of the step, so a resumed run continues the schedule exactly.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of "
                         f"{LR_SCHEDULES}")
    progress = min(step / max(total_steps, 1), 1.0)
    if schedule == "cosine":
        return base_lr * (1 + math.cos(math.pi * progress)) / 2
    if schedule == "rampdown" and progress > 1 - RAMPDOWN_FRACTION:
        t = (progress - (1 - RAMPDOWN_FRACTION)) / RAMPDOWN_FRACTION
        return base_lr * ((1 + math.cos(math.pi * t)) / 2) ** 2
    return base_lr


RAMPDOWN_FRACTION = 0.3  # the Noise2Noise code's ramp-down covers the last 30% of training


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
            raise ValueError("the optimizer does not hold this network's parameters (was the "
                             "network moved with .to() after the optimizer was made? make the "
                             "optimizer after)")
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


# --- the run's record: history and plot ----------------------------------------------------------


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


def check_same_run(saved, current):
    """A checkpoint may only be resumed by the run that made it. The number of epochs may grow,
    and the number of processes may change: with the same global batch, W processes train the
    network one process would (chapter 10)."""
    ignore = {"num_epochs", "world_size"}
    if "lr_schedule" in current:  # runs from before schedules existed had a constant rate
        saved = {"lr_schedule": "constant", **saved}
    differences = {key: (saved.get(key), current.get(key)) for key in set(saved) | set(current)
                   if key not in ignore and saved.get(key) != current.get(key)}
    if differences:
        details = ", ".join(f"{key}: saved {old!r}, now {new!r}"
                            for key, (old, new) in sorted(differences.items()))
        raise ValueError(f"cannot resume: the checkpoint was made with different settings "
                         f"({details})")


# --- the loop ------------------------------------------------------------------------------------


def train_one_epoch(stepper, inputs, targets, order, batch_size, dtype, description, progress,
                    learning_rates=None):
    """One pass over the data in the given order; returns the mean training loss per sample.

    In data-parallel training (chapter 10) each process steps on its own shard of every batch,
    and the loss sums of all processes are added up: every process sees the same mean, and so
    all of them stop together if it is not finite. ``learning_rates(number)``, when given, sets
    the learning rate before batch ``number`` (0-based) of the epoch (a schedule).
    """
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    starts = range(0, len(order), batch_size)
    bar = progress_bar(starts, description, progress)
    for number, start in enumerate(bar, 1):
        if learning_rates is not None:
            set_learning_rate(stepper.optimizer, learning_rates(number - 1))
        chosen = distributed.my_shard(order[start:start + batch_size])  # alone: the whole batch
        loss = stepper.step(to_float(inputs[chosen], dtype), to_float(targets[chosen], dtype))
        total += loss.to(torch.float64) * len(chosen)
        # Reading the loss waits for the GPU to finish its queue: only every 50 batches.
        if number % 50 == 0 or number == len(starts):
            check_running_loss(total, min(start + batch_size, len(order)), number, bar)
    bar.close()
    return distributed.sum_over_processes(total).item() / len(order)


def check_running_loss(total, count, number, bar):
    """Show the mean loss so far (all processes together); stop if it is not finite."""
    running = distributed.sum_over_processes(total).item() / count
    if not math.isfinite(running):
        bar.close()
        raise TrainingDiverged(f"the training loss became {running} by batch {number}")
    bar.set_postfix(loss=f"{running:.5f}")


def train_fresh_epoch(stepper, pairs, first_step, num_steps, batch_size, device, dtype,
                      description, progress, learning_rates=None):
    """``num_steps`` steps on mini-batches drawn afresh (``data.FreshPairs``), numbered from
    ``first_step`` on; returns the mean training loss per sample.

    Every process draws the same global batch (a pure function of the step number) and keeps
    its own shard of it, as ``train_one_epoch`` does with the indices of a fixed set.
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    steps = range(first_step, first_step + num_steps)
    bar = progress_bar(steps, description, progress)
    for number, step in enumerate(bar, 1):
        if learning_rates is not None:
            set_learning_rate(stepper.optimizer, learning_rates(number - 1))
        inputs, targets = pairs.batch(step, batch_size)
        chosen = distributed.my_shard(torch.arange(batch_size))
        loss = stepper.step(inputs[chosen].to(device=device, dtype=dtype),
                            targets[chosen].to(device=device, dtype=dtype))
        total += loss.to(torch.float64) * len(chosen)
        if number % 50 == 0 or number == num_steps:
            check_running_loss(total, number * batch_size, number, bar)
    bar.close()
    return distributed.sum_over_processes(total).item() / (num_steps * batch_size)


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
    check_validation(validation)


def check_validation(validation):
    for name, (noisy, clean) in validation.items():
        if noisy.shape != clean.shape or len(noisy) == 0:
            raise ValueError(f"validation set {name!r}: noisy and clean images must be non-empty "
                             f"and of the same shape, got {tuple(noisy.shape)} and "
                             f"{tuple(clean.shape)}")


def train(network, train_input, train_target, num_epochs, *, settings=None, optimizer=None,
          validation=None, out_dir=None, resume=False, overwrite=False, callbacks=(),
          progress=True, config=None, steps_per_epoch=None):
    """Train ``network`` to map ``train_input`` to ``train_target``; returns the history.

    * Inputs and targets are (N, 3, H, W) images with values 0..255 (uint8 or float): for
      Noise2Noise, two noisy copies of the same images. ``num_epochs`` counts the whole run:
      resuming a run that finished epoch 3 with ``num_epochs=5`` trains epochs 4 and 5.
    * Or ``train_input`` is a ``data.FreshPairs`` (and ``train_target`` None): every step draws
      a fresh mini-batch of crops and noise, and an epoch is ``steps_per_epoch`` steps.
    * ``settings`` (a ``TrainSettings``) says how to optimise, the learning-rate schedule
      included; the network, from-scratch or ``torch.nn``, is moved to its device and dtype.
      ``optimizer`` is an optimizer already made for the network (the course's ``Model`` keeps
      one across calls); by default one is made from ``settings``.
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
    fresh = isinstance(train_input, FreshPairs)
    if fresh:
        check_fresh_data(train_target, steps_per_epoch, validation)
    else:
        check_training_data(train_input, train_target, validation)
    if out_dir is not None:  # in every process, before process 0 may write anything
        check_run_folder(out_dir, resume, overwrite)
        if overwrite and distributed.is_main_process():  # no old network.pth beside the new run
            remove_old_run(out_dir)
    device, dtype = resolve_device(settings.device), settings.dtype
    network.to(device=device, dtype=dtype)
    reduce_gradients = distributed.all_reduce_gradients if distributed.world_size() > 1 else None
    stepper = make_stepper(network, optimizer or settings.optimizer, settings.lr,
                           settings.momentum, reduce_gradients)
    if not fresh:
        inputs, targets = train_input.to(device), train_target.to(device)
        steps_per_epoch = math.ceil(len(inputs) / settings.batch_size)
    validation = {name: (noisy.to(device), clean.to(device))
                  for name, (noisy, clean) in validation.items()}
    framework = "torch" if is_torch_network(network) else "scratchnn"
    base_lr = learning_rate(stepper.optimizer)
    config = {**(config or {}), "seed": settings.seed, "batch_size": settings.batch_size,
              "num_train": "fresh" if fresh else len(inputs), "optimizer":
              type(stepper.optimizer).__name__, "lr": base_lr, "momentum": settings.momentum,
              "framework": framework, "dtype": str(dtype), "num_epochs": num_epochs,
              "world_size": distributed.world_size(), **schedule_config(settings, fresh,
                                                                          steps_per_epoch,
                                                                          num_epochs)}

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

    total_steps = num_epochs * steps_per_epoch
    for epoch in range(first_epoch, num_epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        first_step = (epoch - 1) * steps_per_epoch

        def learning_rates(number):
            return scheduled_learning_rate(settings.lr_schedule, base_lr, first_step + number,
                                           total_steps)

        schedule = None if settings.lr_schedule == "constant" else learning_rates
        description = f"epoch {epoch}/{num_epochs}"
        try:
            if fresh:
                loss = train_fresh_epoch(stepper, train_input, first_step, steps_per_epoch,
                                         settings.batch_size, device, dtype, description,
                                         progress, schedule)
            else:
                order = epoch_permutation(len(inputs), settings.seed, epoch).to(device)
                loss = train_one_epoch(stepper, inputs, targets, order, settings.batch_size,
                                       dtype, description, progress, schedule)
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

    set_learning_rate(stepper.optimizer, base_lr)  # the optimizer may be used again (Model)
    if out_dir is not None:
        save_weights(Path(out_dir) / WEIGHTS_FILE, stepper.weights())
    return run.history


def check_fresh_data(train_target, steps_per_epoch, validation):
    if train_target is not None:
        raise ValueError("with FreshPairs as train_input, train_target must be None: the pairs "
                         "draw both the inputs and the targets")
    if not (isinstance(steps_per_epoch, int) and steps_per_epoch >= 1):
        raise ValueError(f"with FreshPairs, steps_per_epoch must be an int >= 1, got "
                         f"{steps_per_epoch!r}")
    check_validation(validation)


def schedule_config(settings, fresh, steps_per_epoch, num_epochs):
    """What of the run's length a resume must keep: a schedule other than ``constant`` depends
    on the total number of steps, so such a run cannot be lengthened; with fresh pairs the
    number of steps of an epoch is part of the run."""
    config = {"lr_schedule": settings.lr_schedule}
    if settings.lr_schedule != "constant":
        config["total_steps"] = num_epochs * steps_per_epoch
    if fresh:
        config["steps_per_epoch"] = steps_per_epoch
    return config


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

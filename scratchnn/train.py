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
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import distributed
from .data import FreshPairs, to_float
from .files import WEIGHTS_FILE, check_run_folder, load_checkpoint, remove_old_run, save_weights
from .optimizers import (is_torch_network, learning_rate, scheduled_learning_rate,
                         set_learning_rate)
from .progress import progress_bar
from .records import Run, check_validation, validation_sets
from .settings import TrainSettings
# Importable from here too, as the chapters did before the steppers had a file of their own.
from .steppers import ScratchStepper, TorchStepper, make_stepper  # noqa: F401


class TrainingDiverged(RuntimeError):
    """The loss (or a parameter) became NaN or infinite; training cannot go on from here."""


# --- device and order ----------------------------------------------------------------------------


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


def check_training_data(inputs, targets, validation):
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError("train_input and train_target must be tensors of images")
    if inputs.shape != targets.shape or len(inputs) == 0:
        raise ValueError(f"train_input and train_target must be non-empty and of the same shape, "
                         f"got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    check_validation(validation)


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
    setup = set_up(network, train_input, train_target, num_epochs, settings, optimizer,
                   validation, out_dir, resume, overwrite, config, steps_per_epoch)
    progress = progress and distributed.is_main_process()
    for epoch in range(setup.first_epoch, num_epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            loss = train_epoch(setup, epoch, num_epochs, settings, progress)
            check_parameters_finite(setup.stepper)
        except TrainingDiverged as error:
            kept = (f"; the last good checkpoint (epoch {epoch - 1}) is kept in {out_dir}"
                    if out_dir is not None else "")
            raise TrainingDiverged(f"training diverged in epoch {epoch}: {error}. The learning "
                                   f"rate {setup.base_lr} is probably too large{kept}") from None
        setup.run.end_epoch(epoch, loss, time.perf_counter() - started,
                            time.process_time() - cpu_started)
        for callback in callbacks:
            callback(epoch, setup.run.history)

    set_learning_rate(setup.stepper.optimizer, setup.base_lr)  # Model reuses the optimizer
    if setup.run.out_dir is not None:
        save_weights(Path(out_dir) / WEIGHTS_FILE, setup.stepper.weights())
    return setup.run.history


@dataclass
class Setup:
    """Everything the loop of ``train`` needs, made ready by ``set_up``."""
    stepper: object            # ScratchStepper or TorchStepper
    run: Run                   # validation, history, files
    pairs: object              # FreshPairs, or (inputs, targets) on the device
    steps_per_epoch: int
    first_epoch: int           # 1, or the epoch after the checkpoint's
    base_lr: float             # the schedule's starting learning rate
    device: torch.device


def set_up(network, train_input, train_target, num_epochs, settings, optimizer, validation,
           out_dir, resume, overwrite, config, steps_per_epoch):
    """Check the arguments, move the network, make the stepper, read the checkpoint to resume
    (or measure epoch 0), and describe the run (``config``, checked on resume)."""
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
    if fresh:
        pairs, num_train = train_input, "fresh"
    else:
        pairs, num_train = (train_input.to(device), train_target.to(device)), len(train_input)
        steps_per_epoch = math.ceil(num_train / settings.batch_size)
    validation = {name: (noisy.to(device), clean.to(device))
                  for name, (noisy, clean) in validation.items()}
    framework = "torch" if is_torch_network(network) else "scratchnn"
    base_lr = learning_rate(stepper.optimizer)
    config = {**(config or {}), "seed": settings.seed, "batch_size": settings.batch_size,
              "num_train": num_train, "optimizer": type(stepper.optimizer).__name__,
              "lr": base_lr, "momentum": settings.momentum, "framework": framework,
              "dtype": str(dtype), "num_epochs": num_epochs,
              "world_size": distributed.world_size(),
              **schedule_config(settings, fresh, steps_per_epoch, num_epochs)}

    checkpoint = load_checkpoint(out_dir) if (out_dir is not None and resume) else None
    if checkpoint is not None:
        check_same_run(checkpoint["config"], config)
        stepper.load_state_dict(checkpoint)
    # Every replica starts from process 0's weights. Past the barrier, every process has checked
    # the run folder and read the checkpoint: process 0 may write.
    distributed.broadcast_parameters(stepper.parameters())
    distributed.barrier()
    if not distributed.is_main_process():
        validation, out_dir = {}, None  # only process 0 validates and writes
    run = Run(stepper, validation, dtype, out_dir, config, label=framework)
    if checkpoint is not None:
        first_epoch, run.history = checkpoint["epoch"] + 1, checkpoint["history"]
    else:
        run.start()
        first_epoch = 1
    return Setup(stepper, run, pairs, steps_per_epoch, first_epoch, base_lr, device)


def train_epoch(setup, epoch, num_epochs, settings, progress):
    """One epoch of the run: its steps, at the learning rates of the schedule."""
    first_step = (epoch - 1) * setup.steps_per_epoch
    total_steps = num_epochs * setup.steps_per_epoch

    def learning_rates(number):
        return scheduled_learning_rate(settings.lr_schedule, setup.base_lr, first_step + number,
                                       total_steps)

    schedule = None if settings.lr_schedule == "constant" else learning_rates
    description = f"epoch {epoch}/{num_epochs}"
    if isinstance(setup.pairs, FreshPairs):
        return train_fresh_epoch(setup.stepper, setup.pairs, first_step, setup.steps_per_epoch,
                                 settings.batch_size, setup.device, settings.dtype, description,
                                 progress, schedule)
    inputs, targets = setup.pairs
    order = epoch_permutation(len(inputs), settings.seed, epoch).to(setup.device)
    return train_one_epoch(setup.stepper, inputs, targets, order, settings.batch_size,
                           settings.dtype, description, progress, schedule)


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



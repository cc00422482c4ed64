"""Data-parallel training with ``torch.distributed``: the few calls that make replicas agree.

``torchrun --nproc-per-node W -m scratchnn train ...`` starts W copies of the same program, one
per CPU core group or per GPU. Each copy (a *process*, numbered by its *rank* 0..W-1) holds the
whole network, a *replica*. Training stays one run because of three rules (chapter 10):

1. **Start equal.** ``broadcast_parameters`` copies process 0's parameters to every process.
2. **Share every batch.** Each global mini-batch of the epoch's order is cut into W nearly equal
   shards (``shard``); process ``r`` computes the loss and the gradients of shard ``r`` only.
3. **Step together.** ``all_reduce_gradients`` combines the shards' gradients into the gradient
   of the whole batch, on every process, before the optimizer steps; every replica then takes
   exactly the step that one process would take on the whole batch.

gloo carries the messages between CPU processes, NCCL between GPUs. Nothing here is part of the
framework (``scratchnn.nn``): the distributed calls live in the training loop, around it.

Outside ``torchrun`` (no process group) every function here does nothing, or returns what one
process alone would: a world of size 1, rank 0, the whole batch.
"""
import json
import os
import time

import torch
import torch.distributed as dist

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --- who am I? -----------------------------------------------------------------------------------


def launched_by_torchrun():
    """True in a process started by ``torchrun``, which describes the group in the environment:
    ``RANK`` (this process, 0..W-1), ``LOCAL_RANK`` (its number on this machine),
    ``WORLD_SIZE`` (W) and ``MASTER_ADDR:MASTER_PORT`` (where the processes meet)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def in_group():
    """True once this process has joined a group of processes (``start``)."""
    return dist.is_available() and dist.is_initialized()


def world_size():
    """The number of processes training together; 1 when training alone."""
    return dist.get_world_size() if in_group() else 1


def rank():
    """This process's number, 0 to ``world_size() - 1``; 0 when training alone."""
    return dist.get_rank() if in_group() else 0


def is_main_process():
    """True in the process that validates, prints and writes files: rank 0, or the only one.

    Before the group is joined (or after it is left), torchrun's ``RANK`` variable says it.
    """
    if in_group():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def report_error_to_torchrun(message):
    """Leave a one-line error where ``torchrun`` looks for the cause of a failed process.

    When a process ends with a non-zero exit code, torchrun prints a report of its own (some 30
    lines) after everything the processes printed. It reads each process's cause from the JSON
    file named by ``TORCHELASTIC_ERROR_FILE`` (the format of torch's ``ErrorHandler``); without
    it, the report says only "To enable traceback see: ...". With it, the report's "Root Cause"
    is our one line. Outside torchrun this does nothing.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {"message": {"message": message,
                          "extraInfo": {"py_callstack": message,
                                        "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as file:
            json.dump(record, file)
    except OSError:
        pass  # torchrun's report then lacks our line; ours was printed already


# --- joining and leaving the group ---------------------------------------------------------------


def start(device):
    """Join the group of processes ``torchrun`` started, if it did; returns this process's device.

    GPUs talk through NCCL, and each process of a machine takes the GPU numbered by its local
    rank (two processes on one GPU are not allowed by NCCL). CPU processes talk through gloo.
    ``init_process_group`` waits until all W processes have arrived, then returns.
    """
    if not launched_by_torchrun() or in_group():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def stop():
    """Leave the group (every process, at the end): frees the connections and the GPU's
    communicator cleanly."""
    if in_group():
        dist.destroy_process_group()


def barrier():
    """Wait until every process has arrived here.

    Collective calls are not always meeting points: NCCL only queues a broadcast on the GPU and
    returns at once. Where the order of events between processes matters (process 0 must not
    write before the others have checked the run folder), a barrier makes it certain.
    """
    if world_size() == 1:
        return
    if dist.get_backend() == "nccl":  # name this process's GPU, or NCCL guesses it (and warns)
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# --- the three rules -----------------------------------------------------------------------------


def broadcast_parameters(parameters):
    """Overwrite every process's parameters, in place, with those of process 0.

    Each process built its network from the same seed, so they should agree already; the
    broadcast makes it a guarantee rather than a hope (another seed, another library version,
    a resumed run: whatever process 0 holds is what everybody trains).
    """
    if world_size() == 1:
        return
    for parameter in parameters:
        dist.broadcast(parameter, src=0)


def shard(batch, rank, world_size):
    """Process ``rank``'s part of a global mini-batch (a tensor of sample indices).

    The batch is cut into ``world_size`` contiguous slices whose lengths differ by at most one
    (``torch.tensor_split``): 10 samples on 4 processes give 3, 3, 2, 2. A slice is empty when
    the batch holds fewer samples than there are processes (a small last batch). Together the
    slices hold every index of the batch exactly once.
    """
    return torch.tensor_split(batch, world_size)[rank]


def my_shard(batch):
    """This process's shard of a global mini-batch; the whole batch when training alone."""
    return shard(batch, rank(), world_size())


def all_reduce_gradients(gradients, count):
    """Replace every process's gradients, in place, by the gradient of the whole global batch.

    Each process holds the gradient of the MSE averaged over its own ``count`` samples. Times
    ``count``, it is the gradient of the *sum* of its samples' losses; these sums add up, over
    the processes, to the sum over the global batch, and dividing by the total count gives the
    gradient of the MSE averaged over the global batch (eq. ch10-weighted). With equal shards
    this is the plain average of the processes' gradients; with unequal ones (the last batch of
    an epoch, a batch size that W does not divide) it is still exact, where a plain average
    would not be.

    Every gradient, and the count, travel in one *bucket*: one flat tensor, one all-reduce.
    Each collective call costs a fixed start-up time however small its message, and a network
    has many small tensors (biases); one call pays it once.
    """
    if world_size() == 1:
        return
    sizes = [gradient.numel() for gradient in gradients]
    bucket = torch.cat([gradient.reshape(-1) for gradient in gradients]
                       + [gradients[0].new_ones(1)]) * count  # [count * gradients..., count]
    dist.all_reduce(bucket, op=dist.ReduceOp.SUM)  # every process receives the sum
    total = bucket[-1]
    for gradient, summed in zip(gradients, torch.split(bucket[:-1], sizes)):
        gradient.copy_(summed.view_as(gradient) / total)


def sum_over_processes(value):
    """The sum of a tensor over all processes, on every process (``value`` when alone).

    Used for the training loss: each process adds up the losses of its own samples only.
    """
    if world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value

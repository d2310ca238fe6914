"""Data-parallel training: start, join and leave a ``torch.distributed`` process group, and
launch one function on N workers, so the one trainer (``models.trainer``) runs under DDP.

The trainer itself has no launcher logic: it wraps its work in DistributedDataParallel
whenever a process group is initialised (see its module docstring for what changes across
ranks). Three ways to get such a group, all running the same code:

* ``torchrun`` (one command per machine; gloo on CPU, NCCL + ``cuda:LOCAL_RANK`` on GPUs)::

      torchrun --standalone --nproc-per-node 4 -m musicrec.cli.main train sasrec \\
          --split SPLIT --out MODEL [--param embedding_dim=128 ...] [--include-valid] [--resume]
      # several machines, on each: torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
      #     --rdzv-endpoint HOST:29400 --rdzv-id RUN -m musicrec.cli.main train ...

  torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``musicrec train``
  sees them (:func:`under_torchrun`), joins the group (:func:`run_in_group`), fits, and rank 0
  writes the model folder.
* :func:`spawn` (``musicrec train --nproc N``): N local processes over loopback (gloo), e.g.
  to check a DDP run on a laptop, and what the tests use;
* :func:`run_ray` (``musicrec train --nproc N --launcher ray``): Ray Train's TorchTrainer,
  which creates the group on the Ray workers (``use_gpu`` -> NCCL).

Each worker holds the whole training tensors and takes its share of every batch; the global
batch (``batch_size``) and the number of optimiser steps are those of a one-process run.

Large item vocabularies
-----------------------
Every rank holds the full item embedding table (DDP replicates parameters), its gradient and
AdamW's two moments: about ``rows x dim x 4 bytes x 4`` (weights, gradient, 2 moments), e.g.
10M items x 128 dims = 5.1 GB x 4 = 20 GB per process. Until that stops fitting in one
device's memory, DDP replication is simplest and fastest. Two steps on the way:

* scoring does not need the table in the process's heap: ``item_vectors()`` saved as a
  ``.npy`` can be opened with ``numpy.load(path, mmap_mode="r")``
  (``musicrec.serve.retrieval.memmap_item_vectors``) and scored block by block
  (``top_k_memmap``), so serving memory stays bounded by the
  block size, not the catalogue;
* the dense AdamW update of the whole table every step (O(rows x dim)) dominates time before
  memory runs out; row-wise (sparse) updates need the loss to look items up through
  ``F.embedding(..., sparse=True)``, a change requested of ``models/neural.py``.

TorchRec's sharded embedding tables (``EmbeddingBagCollection`` with a ``DistributedModelParallel``
sharding plan: table-wise / row-wise / column-wise across GPUs, fused sparse optimisers, with
the dense layers still under DDP) become the next step once one table plus its optimiser
state (~``rows x dim x 4 bytes x 3`` without the dense gradient) no longer fits one device,
or when the embedding all-reduce dominates the step (the gradient of a replicated table is
all-reduced densely every step). That changes the model code (the item lookups become a
sharded module), so it is a separate path, not a trainer option.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Callable

from musicrec import MusicrecError

LAUNCHERS = ("spawn", "ray")
LOOPBACK_IFNAME = "lo0" if sys.platform == "darwin" else "lo"   # gloo's interface for local runs


# ---------------------------------------------------------------- process group
def init_process_group(backend: str | None = None, timeout_s: float = 1800.0) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); returns (rank, world size).

    ``backend`` None picks NCCL when CUDA is present (each process on ``cuda:LOCAL_RANK``) and
    gloo otherwise. Already initialised (e.g. by Ray Train): returns its rank and size.
    """
    import datetime

    import torch
    import torch.distributed as td

    if td.is_initialized():
        return td.get_rank(), td.get_world_size()
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise MusicrecError(f"no distributed environment ({', '.join(missing)} unset): launch with torchrun")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    td.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    return td.get_rank(), td.get_world_size()


def destroy_process_group(wait: bool = False) -> None:
    """Leave the process group; ``wait``: first wait for every rank (after a successful run,
    so no rank tears down while another still talks to it)."""
    import gc

    import torch.distributed as td

    if td.is_initialized():
        if wait:
            td.barrier()
        # a DDP wrapper left in a reference cycle would otherwise be freed at interpreter exit,
        # after the group's threads: "terminate called without an active exception" (SIGABRT)
        gc.collect()
        td.destroy_process_group()


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    import torch.distributed as td

    return td.get_rank() if td.is_available() and td.is_initialized() else 0


def free_port() -> int:
    """A TCP port free on loopback now (another process may take it before it is used; the
    window is short enough for tests and local runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- launchers
def spawn(fn: Callable, nproc: int, *args, threads: int = 1, backend: str | None = None):
    """Run ``fn(*args)`` in ``nproc`` new local processes joined in one process group over
    loopback; returns rank 0's return value (which must pickle, as for any process pool).
    ``backend`` None: NCCL when there is a GPU per process (rank r on ``cuda:r``), else gloo.

    ``fn`` must be importable by name (module level). Each process uses ``threads`` torch
    threads. A worker's MusicrecError is raised here as a MusicrecError (its one line, prefixed
    with the rank); other exceptions as ``torch.multiprocessing.ProcessRaisedException``.
    """
    import torch.multiprocessing as mp

    _check_nproc(nproc)
    if backend is None:
        import torch

        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= nproc else "gloo"
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    port = free_port()
    received = []
    workers = mp.start_processes(_spawned, args=(fn, args, nproc, port, threads, backend, results),
                                 nprocs=nproc, join=False, start_method="spawn")
    try:
        # read while waiting: a result larger than the pipe's buffer blocks its sender until read
        while not workers.join(timeout=0.2):
            while not results.empty():
                received.append(results.get())
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        # a user error in a worker stays a one-line MusicrecError (spawn has stopped the others)
        while not results.empty():
            received.append(results.get())
        for kind, value in received:
            if kind == "error":
                raise MusicrecError(value) from None
        raise
    while not results.empty():
        received.append(results.get())
    for kind, value in received:
        if kind == "ok":
            return value
    raise MusicrecError("the rank-0 worker returned no result")


def _spawned(local_rank: int, fn: Callable, args: tuple, world: int, port: int, threads: int, backend: str,
             results) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(local_rank),
                       "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world)})
    # gloo connects through the interface the hostname resolves to; loopback is always there
    os.environ.setdefault("GLOO_SOCKET_IFNAME", LOOPBACK_IFNAME)
    init_process_group(backend)
    try:
        out = fn(*args)
    except MusicrecError as err:
        results.put(("error", f"rank {local_rank}: {err}"))
        destroy_process_group()
        raise
    if local_rank == 0:
        results.put(("ok", out))
    destroy_process_group(wait=True)


def run_ray(fn: Callable, nproc: int, *args, use_gpu: bool = False, threads: int = 1, address: str | None = None,
            num_cpus: int | None = None, storage_path: str | None = None):
    """Run ``fn(*args)`` on ``nproc`` Ray Train workers (TorchTrainer: the process group is
    gloo on CPU, NCCL with ``use_gpu``); returns rank 0's return value, which must be
    JSON-able. Starts a local Ray instance (``num_cpus``) unless one is running or ``address``
    names a cluster; ``storage_path`` is where Ray Train keeps its run folder (default: a
    temporary folder, removed after).
    """
    import tempfile

    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise MusicrecError("--launcher ray needs Ray Train: pip install 'ray[train]'") from None
    _check_nproc(nproc)
    owned = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(address=address, **kwargs)
        owned = True
    try:
        with tempfile.TemporaryDirectory(prefix="musicrec-ray-train-") as tmp:
            trainer = TorchTrainer(
                _ray_worker, train_loop_config={"fn": fn, "args": args, "threads": threads},
                torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                scaling_config=ScalingConfig(num_workers=nproc, use_gpu=use_gpu, resources_per_worker={"CPU": 1}),
                run_config=RunConfig(storage_path=storage_path or tmp, name="musicrec-train"))
            try:
                result = trainer.fit()
                if result.error is not None:
                    raise result.error
            except Exception as err:
                message = _user_error(err)
                if message is None:
                    raise
                raise MusicrecError(message) from None
            if result.checkpoint is None:
                raise MusicrecError("the Ray Train run returned no result")
            with result.checkpoint.as_directory() as folder:
                with open(os.path.join(folder, "result.json"), encoding="utf-8") as fh:
                    return json.load(fh)
    finally:
        if owned:
            ray.shutdown()


def _ray_worker(config: dict) -> None:
    import tempfile

    import ray.train
    import torch

    torch.set_num_threads(config["threads"])
    out = config["fn"](*config["args"])
    # Ray Train hands back only what a checkpoint holds: rank 0 reports its result as one
    # (every worker must call report, the others without a checkpoint)
    with tempfile.TemporaryDirectory(prefix="musicrec-result-") as folder:
        checkpoint = None
        if rank() == 0:
            with open(os.path.join(folder, "result.json"), "w", encoding="utf-8") as fh:
                json.dump(out, fh)
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({}, checkpoint=checkpoint)


def _user_error(err: BaseException, depth: int = 0) -> str | None:
    """The message of a MusicrecError somewhere inside a Ray Train failure (it wraps the
    workers' exceptions: causes, contexts and per-worker failures), else None."""
    cause = getattr(err, "cause", None)      # a RayTaskError keeps the worker's own exception
    if isinstance(cause, MusicrecError):
        return str(cause)
    if isinstance(err, MusicrecError):
        return str(err)
    if depth > 6:
        return None
    inner = [err.__cause__, err.__context__, cause, *getattr(err, "worker_failures", {}).values()]
    for e in inner:
        if isinstance(e, BaseException):
            found = _user_error(e, depth + 1)
            if found:
                return found
    return None


def launch(launcher: str, fn: Callable, nproc: int, *args, **options):
    """:func:`spawn` or :func:`run_ray` by name; Ray workers get a GPU each when this
    process sees CUDA (unless ``use_gpu`` is given)."""
    if launcher not in LAUNCHERS:
        raise MusicrecError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    if launcher == "spawn":
        return spawn(fn, nproc, *args, **options)
    if "use_gpu" not in options:
        import torch

        options["use_gpu"] = torch.cuda.is_available()
    return run_ray(fn, nproc, *args, **options)


def _check_nproc(nproc: int) -> None:
    if not isinstance(nproc, int) or nproc < 1:
        raise MusicrecError(f"the number of processes must be an integer >= 1, got {nproc!r}")


# ---------------------------------------------------------------- the training entry
def default_checkpoints(out: str) -> str | None:
    """``out/checkpoints`` for a model folder given as a path; None for a URL (checkpoints are
    local files)."""
    return os.path.join(out, "checkpoints") if "://" not in out else None


def world_size() -> int:
    import torch.distributed as td

    return td.get_world_size() if td.is_available() and td.is_initialized() else 1


def under_torchrun() -> bool:
    """Whether torchrun started this process (it sets RANK, WORLD_SIZE and TORCHELASTIC_RUN_ID)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ and "WORLD_SIZE" in os.environ


def run_in_group(fn: Callable, *args, **kwargs) -> tuple[int, object]:
    """Join torchrun's process group, run ``fn(*args, **kwargs)``, leave; returns (rank, result).

    What ``musicrec train`` does when torchrun started it, so every rank runs the same command.
    """
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 1)))
    me = 0
    try:
        me, _ = init_process_group()
        result = fn(*args, **kwargs)
    except MusicrecError as err:
        destroy_process_group()
        raise MusicrecError(f"rank {me}: {err}") from None
    destroy_process_group(wait=True)
    return me, result

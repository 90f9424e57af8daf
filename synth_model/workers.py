"""Sampling processes: a request split into shares, each sampled in a forked process on one thread.

A small model's decoding step is bound by per-op overhead on one Python thread, not by arithmetic,
so on a CPU several single-thread processes outpace one process running the same number of
threads. Fork (not spawn) starts a worker in milliseconds and shares the loaded model copy-on-write.
A worker runs one thread because GNU OpenMP hangs in a forked child that opens a parallel region
after its parent did; on CUDA (which cannot be used after a fork) and with vLLM sampling stays in
the calling process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import TypeVar

import numpy as np
import torch

from synth_model.errors import ConfigError, GenerationError, SynthError

T = TypeVar("T")
Report = Callable[[int], None]  # a worker's valid records so far
Task = Callable[[Report], T]

PR_SET_PDEATHSIG = 1  # Linux prctl option: a signal for this process when its parent exits
MIN_SHARE = 250  # units (records, or groups) per worker below which `workers: auto` starts fewer
REPORT_EVERY_S = 0.2  # a worker's progress messages, at most this often


def worker_count(
    setting: int | str, device: torch.device, backend: str, target: int, records_per_unit: float = 1.0
) -> int:
    """`generation.workers`: auto = one per thread torch would use on this CPU, each with at least
    `MIN_SHARE` units of `records_per_unit` records (a smaller share spends too much of its time on
    the long units that finish last); 1 where processes cannot fork (see `_cannot_fork`)."""
    cannot = _cannot_fork(device, backend)
    if setting == "auto":
        return 1 if cannot else max(1, min(torch.get_num_threads(), int(target / records_per_unit) // MIN_SHARE))
    if setting > 1 and cannot:
        raise ConfigError(
            f"generation.workers: {setting} samples in forked CPU processes, which cannot run {cannot}; "
            "set generation.workers to 1 or auto"
        )
    return min(setting, target)


def _cannot_fork(device: torch.device, backend: str) -> str | None:
    """Why sampling must stay in this process, or None."""
    if device.type != "cpu":
        return f"on {device.type.upper()} (it cannot be used after a fork)"
    if backend != "engine":
        return f"with backend {backend}"
    if not sys.platform.startswith("linux"):
        return f"on {sys.platform} (workers need Linux's fork)"
    if multiprocessing.current_process().daemon:
        return "in a daemonic process (it may not start processes)"
    return None


def split_target(target: int, workers: int) -> list[int]:
    """`target` split as evenly as whole records allow."""
    return [target // workers + (i < target % workers) for i in range(workers)]


def seeds(seed: int, workers: int) -> list[int]:
    """One seed per worker, independent streams; a single worker keeps `seed` (the same records as before)."""
    if workers == 1:
        return [seed]
    return [int(s) % 2**31 for s in np.random.SeedSequence(seed).generate_state(workers)]


def run_forked(tasks: list[Task], report: Report) -> list[T]:
    """Run each task in its own forked single-thread process; `report` gets the sum of their progress.

    The first error in any worker stops the others and is raised here (the package's own errors as
    they are, anything else as a GenerationError holding the worker's traceback).
    """
    context = multiprocessing.get_context("fork")
    procs, pending = [], {}
    try:
        for i, task in enumerate(tasks):
            receive, send = context.Pipe(duplex=False)
            proc = context.Process(target=_child, args=(task, send, os.getpid()), name=f"synth-sampler-{i}")
            proc.start()
            send.close()
            procs.append(proc)
            pending[receive] = i
        progress, results = [0] * len(tasks), [None] * len(tasks)
        while pending:
            for conn in wait(list(pending)):
                i = pending[conn]
                try:
                    kind, value = conn.recv()
                except EOFError:
                    procs[i].join(5)
                    code = procs[i].exitcode
                    cause = ", killed: out of memory?" if code == -signal.SIGKILL else ""
                    raise GenerationError(
                        f"sampling worker {i} died (exit code {code}{cause}); "
                        "lower generation.batch_size or set generation.workers: 1"
                    ) from None
                if kind == "error":
                    raise value
                if kind == "progress":
                    progress[i] = value
                    report(sum(progress))
                else:
                    results[i] = value
                    del pending[conn]
                    conn.close()
        return results
    finally:
        for conn in pending:
            conn.close()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _child(task: Task, send: Connection, parent: int) -> None:
    """In the forked process: one thread (see the module's note), throttled progress, then the result or the error."""
    _die_with(parent)
    torch.set_num_threads(1)
    last = 0.0

    def report(valid: int) -> None:
        nonlocal last
        if time.monotonic() - last >= REPORT_EVERY_S:
            last = time.monotonic()
            send.send(("progress", valid))

    try:
        send.send(("done", task(report)))
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        send.send(("error", _sendable(err)))
    finally:
        send.close()


def _die_with(parent: int) -> None:
    """A parent killed by a signal (a cancelled run, `kill`) never reaches its `finally`: have Linux
    kill this worker when the parent exits, and leave now if it already has."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _sendable(err: BaseException) -> BaseException:
    if isinstance(err, SynthError | KeyboardInterrupt):
        try:
            pickle.dumps(err)
            return err
        except Exception:  # noqa: BLE001 - an error that cannot travel is described instead
            pass
    return GenerationError(f"a sampling worker failed:\n{''.join(traceback.format_exception(err)).rstrip()}")

"""What ownrec's own evaluations share (`ownrec traits validate`, `ownrec eval rerank`, `ownrec eval`): the
demo template database, simulated people on copies of it, BLAS on one thread, and worker pools. Never the
person's own data: each run works in a temporary folder, and every simulated person is an `Agent` opened on a
folder of their own (`Agent.open(home=...)`), never through OWNREC_HOME."""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.paths import Home

if TYPE_CHECKING:
    from agent.core.api import Agent

# Read by OpenBLAS, OpenMP and MKL when they load: a fresh process's BLAS then runs on one thread.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def demo_template(folder: Path, encoder: Any) -> Path:
    """A database in `folder` with the MovieLens-100K demo catalog imported and encoded (and the trait poles'
    embeddings cached), its write-ahead log checkpointed so the file alone is whole: simulated people and
    tests get copies of it instead of re-encoding 1,682 items each. Returns the database's path."""
    from agent.core.api import Agent

    home = Home(Path(folder))
    agent = Agent.open(encoder, home=home)
    try:
        agent.import_demo()
        agent.traits.space()
        agent.store.checkpoint()
    finally:
        agent.close()
    return home.database


@contextmanager
def person(home: Path, template: Path, encoder: Any, name: str, seed: int) -> Iterator["Agent"]:
    """An Agent on a fresh copy of the template database, in its own folder under `home` (deleted after)."""
    from agent.core.api import Agent

    folder = home / "people" / name
    folder.mkdir(parents=True)
    agent = None
    try:
        shutil.copy(template, Home(folder).database)
        agent = Agent.open(encoder, home=folder, seed=seed)
        yield agent
    finally:
        if agent is not None:
            agent.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """BLAS on one thread for this process, where threadpoolctl is installed (it is optional). The
    products here are small: on a busy 2-core machine OpenBLAS's own threads spin against other
    work (and llama.cpp's) and make training several times slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def worker_pool(workers: int, *, initializer: Callable[..., None] | None = None, initargs: tuple = (),
                fresh_processes: bool = False) -> Iterator[ProcessPoolExecutor]:
    """`workers` worker processes, each first running `initializer(*initargs)`.

    Forked (the default): they inherit this process's memory (the encoded catalog, the data), so only tasks
    and results are pickled. A forked child has only the forking thread; if its garbage collector finalized
    an inherited object that owns threads (an onnxruntime session left over from earlier work tears down its
    thread pool), the child would hang in that destructor for good, as it once did in CI. So garbage is
    collected here first, and everything alive is frozen out of the children's collections while the pool
    forks.

    `fresh_processes`: spawned instead, inheriting nothing (the initializer sets each one up), with one BLAS
    thread each so they do not fight over the cores. The executor starts them as tasks arrive, so the BLAS
    variables stay set here while the pool is open (this process's BLAS is loaded already and keeps its own)."""
    if not fresh_processes:
        gc.collect()
        gc.freeze()
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=initializer, initargs=initargs) as pool:
                yield pool
        finally:
            gc.unfreeze()
        return
    saved = {key: os.environ.get(key) for key in BLAS_THREAD_VARIABLES}
    os.environ.update({key: "1" for key in BLAS_THREAD_VARIABLES})
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=initializer, initargs=initargs) as pool:
            yield pool
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

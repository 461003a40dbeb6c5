"""Where a stage runs: in this process, a local pool, Ray or Slurm, through datatrove's executors.

A stage's work items are split into ``tasks`` contiguous shards (a number fixed by the config, never
by the worker count). Each task runs the stage on its shard and writes one part file per output,
``_work/<step>/parts/<output>/<rank>.parquet``, then its counters, last: a rerun after a crash skips
the shards whose counters exist (in a work folder of the same step identity, see
:mod:`corpus.run.workdir`). The merge concatenates the parts in rank order into the final files with
fixed row groups: the same inputs and config give the same bytes whatever ``workers`` is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from datatrove.pipeline.base import PipelineStep
from pydantic import BaseModel, ConfigDict, Field

from corpus.files import write_json_atomic
from corpus.run.progress import progress
from corpus.run.stage import Stage
from corpus.run.workdir import StepDirs, StepReads, hash_reads, step_identity
from schemas import TableWriter, iter_batches


class ExecutorConfig(BaseModel):
    """Where and how wide to run. Changing it never changes what a stage writes."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray", "slurm"] = Field("local", description="local (this machine), ray or slurm")
    workers: int = Field(1, ge=1, description="tasks run at the same time (local: processes)")
    tasks: int = Field(8, ge=1, description="shards each stage's work is split into; fixed so outputs do not depend on workers")
    cpus_per_task: int = Field(1, ge=1, description="ray/slurm: CPUs per task")
    mem_per_cpu_gb: float = Field(2.0, gt=0, description="ray/slurm: memory per CPU in GB")
    partition: str | None = Field(None, description="slurm: partition")
    time: str = Field("24:00:00", description="slurm: time limit per job")
    sbatch_args: dict[str, str] = Field(default_factory=dict, description="slurm: extra sbatch arguments")
    env_command: str | None = Field(None, description="slurm: command run before each job (e.g. activating an environment)")
    gpus: list[str] | None = Field(None, description="local: GPU ids GPU stages' workers share, one group per worker (default: CUDA_VISIBLE_DEVICES, else all)")
    quiet: bool = Field(False, description="no progress bars, warnings only")


@contextmanager
def watch_completions(folder: Path, tasks: int, desc: str, quiet: bool):
    """A progress bar over finished tasks (counted from datatrove's completion markers)."""
    bar = progress(total=tasks, desc=f"{desc} (tasks)", unit="task", disable=quiet)
    stop = threading.Event()

    def poll():
        while not stop.wait(0.5):
            done = len(list(folder.glob("*"))) if folder.is_dir() else 0
            bar.update(done - bar.n)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous [lo, hi) of ``n`` items for ``rank`` of ``world_size`` (sizes differ by at most one)."""
    per, extra = divmod(n, world_size)
    lo = rank * per + min(rank, extra)
    return lo, lo + per + (1 if rank < extra else 0)


def prepare_once(stage: Stage, dirs: StepDirs) -> None:
    """Run the stage's ``prepare`` unless an earlier run of this step (same identity) already did."""
    marker = dirs.root / "prepared.json"
    if not marker.exists():
        write_json_atomic(marker, stage.prepare() or {})


class ShardStep(PipelineStep):
    """A datatrove pipeline step that runs one shard of a stage and writes its part files."""

    name = "sagecorpus shard"
    type = "sagecorpus"

    def __init__(self, stage: Stage, dirs: StepDirs, quiet: bool = False):
        super().__init__()
        self.stage = stage
        self.dirs = dirs
        self.quiet = quiet

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if not shard_finished(self.dirs, rank):
            run_shard(self.stage, self.dirs, rank, world_size, self.quiet, self.stat_update)
        yield from ()


def shard_finished(dirs: StepDirs, rank: int) -> bool:
    """A shard is finished when its counters are written (last, atomically) or its step is done."""
    return dirs.stats(rank).exists() or dirs.done.exists()


def run_shard(
    stage: Stage, dirs: StepDirs, rank: int, world_size: int, quiet: bool = False,
    stat_update: Callable | None = None,
) -> Counter:
    """Run the stage on shard ``rank`` of ``world_size``; write its parts, then its counters, atomically."""
    items = stage.plan()
    lo, hi = shard_bounds(len(items), rank, world_size)
    outputs = stage.shard_outputs()
    writers = {o: TableWriter(t, dirs.part(o, rank)) for o, t in outputs.items()}
    stage.stats = stats = Counter()
    try:
        with progress(total=hi - lo, desc=f"{stage.name} [{rank + 1}/{world_size}]", unit="item", disable=quiet) as bar:
            for output, rows in stage.process(items[lo:hi]):
                if output not in writers:
                    raise KeyError(f"stage {stage.name} wrote {output!r}, which is not among its outputs {list(outputs)}")
                writers[output].write(rows)
                if output == stage.decisions_file:
                    stats.update(f"decisions.{r['action']}" for r in rows)
                    bar.update(len(rows))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for o, w in writers.items():
        stats[f"rows.{o}"] += w.close()
    stats["items"] += hi - lo
    if stat_update is not None:
        for key, value in stats.items():
            stat_update(key, value=int(value))
    write_json_atomic(dirs.stats(rank), stats)
    return stats


def merge_parts(stage: Stage, dirs: StepDirs, tasks: int) -> dict:
    """Concatenate every output's parts in rank order into the final files; sum the counters.

    Then the stage's ``finish`` runs (whole-output checks, clustering). If anything fails, the
    step's outputs are removed, so a failed check never leaves a file behind for the next step.
    """
    if dirs.done.exists():  # slurm: the step was found done by its prepare job
        return json.loads(dirs.done.read_text())["stats"]
    out_dir = stage.out_dir
    try:
        for output, table in stage.shard_outputs().items():
            with TableWriter(table, out_dir / output) as writer:
                for rank in range(tasks):
                    part = dirs.part(output, rank)
                    if not dirs.stats(rank).exists() or not part.exists():
                        raise FileNotFoundError(f"{part}: task {rank} of step {stage.name} did not finish; rerun to redo it")
                    for batch in iter_batches(part, table, batch_size=table.row_group_size):
                        writer.write(batch)
        stats: Counter = Counter(json.loads((dirs.root / "prepared.json").read_text()))
        for rank in range(tasks):
            stats.update(json.loads(dirs.stats(rank).read_text()))
        stats.update(stage.finish(dict(stats)) or {})
    except BaseException:
        dirs.remove_outputs()
        raise
    stats = dict(sorted(stats.items()))
    dirs.finish(stats)
    shutil.rmtree(dirs.parts, ignore_errors=True)
    return stats


def console_log_level(quiet: bool) -> str:
    """datatrove's per-task console logging: warnings (errors only with ``--quiet``); files keep all."""
    return "ERROR" if quiet else "WARNING"


def _quiet_task_logger(level: str) -> None:
    """Make datatrove's per-task logger print only ``level`` and above on the console.

    datatrove adds an INFO console handler for every task; its log file (under ``_work/``) still
    gets everything. Runs inside the worker process, where the task's logger is set up.
    """
    import datatrove.executor.base as base
    from loguru import logger

    def add_task_logger(logging_dir, rank, local_rank=0, node_rank=-1):
        logger.remove()  # datatrove's own add_task_logger starts the same way
        logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
        logger.add(sys.stderr, level=level, format="{level} | task " + str(rank) + " | {message}")
        logger.add(logfile, level="DEBUG", format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}")
        logger.info(f"Launching pipeline for {rank=}")
        return logfile

    def close_task_logger(logfile):
        logger.complete()
        _driver_log_level(level)
        logfile.close()

    base.add_task_logger = add_task_logger
    base.close_task_logger = close_task_logger


def _driver_log_level(level: str) -> None:
    """datatrove's messages in this (the driving) process: ``level`` and above only."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level, format="{level} | {message}")


def _worker_slot(local_rank: int) -> int:
    """This pool worker's fixed index (a process keeps its GPU whatever task it runs next)."""
    import multiprocess

    identity = multiprocess.current_process()._identity
    return identity[0] - 1 if identity else local_rank


def _local_executor_class():
    from datatrove.executor import LocalPipelineExecutor

    class QuietLocalExecutor(LocalPipelineExecutor):
        """datatrove's local executor with its console logs at ``console_level``; for GPU stages each
        worker process sees only its own devices (``CUDA_VISIBLE_DEVICES``), as Ray and Slurm do."""

        console_level = "WARNING"
        gpu_slots: list[list[str]] = []

        def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
            _quiet_task_logger(self.console_level)
            if self.gpu_slots:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpu_slots[_worker_slot(local_rank) % len(self.gpu_slots)])
            return super()._run_for_rank(rank, local_rank, node_rank)

    return QuietLocalExecutor


def visible_gpus(config: ExecutorConfig) -> list[str]:
    """The devices GPU stages share on this machine: the config's, else CUDA_VISIBLE_DEVICES, else torch's count."""
    if config.gpus is not None:
        return list(config.gpus)
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def gpu_slots(devices: list[str], gpus_per_task: int) -> list[list[str]]:
    """Split devices into one group of ``gpus_per_task`` per worker (leftover devices stay unused)."""
    return [devices[i:i + gpus_per_task] for i in range(0, len(devices) - gpus_per_task + 1, gpus_per_task)]


def _datatrove_executor(config: ExecutorConfig, pipeline: list, tasks: int, logs: Path, gpus: int, depends=None,
                        job_name: str = "sagecorpus"):
    # our shards decide themselves whether they are finished (their counters file, tied to the step's identity)
    if config.kind == "local":
        workers = min(config.workers, tasks)
        slots = gpu_slots(visible_gpus(config), gpus) if gpus else []
        if gpus:
            if not slots:
                raise RuntimeError(f"a step needs {gpus} GPU(s) per task and none are visible (set executor.gpus or CUDA_VISIBLE_DEVICES)")
            workers = min(workers, len(slots))
        executor = _local_executor_class()(
            pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=str(logs), depends=depends, skip_completed=False,
        )
        executor.console_level = console_log_level(config.quiet)
        executor.gpu_slots = slots if workers > 1 else []
        return executor
    if config.kind == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ImportError("executor kind 'ray' needs ray: pip install 'sagecorpus[ray]'")
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=config.workers, logging_dir=str(logs),
            cpus_per_task=config.cpus_per_task, mem_per_cpu_gb=config.mem_per_cpu_gb, gpus_per_task=gpus,
            depends=depends, skip_completed=False,
        )
    from datatrove.executor import SlurmPipelineExecutor

    if not config.partition:
        raise ValueError("executor kind 'slurm' needs a partition (executor.partition)")
    return SlurmPipelineExecutor(
        pipeline=pipeline, tasks=tasks, workers=config.workers, logging_dir=str(logs),
        time=config.time, partition=config.partition, cpus_per_task=config.cpus_per_task,
        mem_per_cpu_gb=int(math.ceil(config.mem_per_cpu_gb)), gpus_per_task=gpus,
        sbatch_args=config.sbatch_args, env_command=config.env_command, depends=depends,
        job_name=job_name, skip_completed=False,
    )


def run_step(stage: Stage, index: int, config: ExecutorConfig, reads: StepReads) -> tuple[dict, dict[str, str]]:
    """Run one bound stage to completion on this machine, a local pool or Ray.

    Returns its counters and the sha256 of its outputs. A step of the same identity whose outputs
    still have their recorded bytes is not run again; finished shards of an interrupted step of the
    same identity are kept; anything else is redone (see :mod:`corpus.run.workdir`).
    """
    if config.kind == "slurm":
        raise ValueError("slurm runs are submitted with submit_slurm(), not run in this process")
    dirs = StepDirs(stage.out_dir, index, stage)
    stage.quiet = config.quiet
    tasks = stage.task_count(config.tasks)
    done = dirs.open(step_identity(stage, reads), tasks)
    if done is not None:
        return done, dirs.finished_outputs()
    prepare_once(stage, dirs)
    stage.begin()
    if config.workers == 1 and config.kind == "local":
        # in process: no pool, but the same shards and part files
        for rank in range(tasks):
            if not shard_finished(dirs, rank):
                run_shard(stage, dirs, rank, tasks, config.quiet)
    else:
        pipeline = [ShardStep(stage, dirs, quiet=config.quiet or config.workers > 1)]
        executor = _datatrove_executor(config, pipeline, tasks, dirs.logs, stage.gpus_per_task)
        _driver_log_level(console_log_level(config.quiet))  # after datatrove's import set its own
        with watch_completions(dirs.logs / "completions", tasks, stage.name, config.quiet):
            executor.run()
    stats = merge_parts(stage, dirs, tasks)
    return stats, dirs.finished_outputs()


class MergeStep(PipelineStep):
    """Slurm: the single task that merges a step's parts once all its shard tasks are done."""

    name = "sagecorpus merge"
    type = "sagecorpus"

    def __init__(self, stage: Stage, dirs: StepDirs, tasks: int):
        super().__init__()
        self.stage, self.dirs, self.tasks = stage, dirs, tasks

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        merge_parts(self.stage, self.dirs, self.tasks)
        yield from ()


class CallStep(PipelineStep):
    """Slurm: a single task that calls a function (a step's prepare; the run's manifest, last)."""

    name = "sagecorpus call"
    type = "sagecorpus"

    def __init__(self, fn: Callable[[], object]):
        super().__init__()
        self.fn = fn

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.fn()
        yield from ()


def open_and_prepare(stage: Stage, dirs: StepDirs, inputs: list[str], tasks: int) -> None:
    """Slurm: a step's first job, run once the step before it merged: hash what it reads (now that it
    exists), keep or reset its work, and run ``prepare`` unless the step is already done."""
    if dirs.open(step_identity(stage, hash_reads(stage, inputs, {})), tasks) is None:
        prepare_once(stage, dirs)
        stage.begin()


def submit_slurm(stages: list[Stage], inputs: list[list[str]], config: ExecutorConfig, finish: Callable[[], object]) -> None:
    """Submit a whole run to Slurm as a chain of dependent jobs: prepare, shards, merge, ..., then ``finish``."""
    previous = None
    for index, (stage, step_inputs) in enumerate(zip(stages, inputs)):
        dirs = StepDirs(stage.out_dir, index, stage)
        tasks = stage.task_count(config.tasks)
        name = dirs.root.name
        logs = Path(stage.out_dir) / "_work" / "slurm-logs" / name  # outside the step's folder, which a reset removes
        prep = _datatrove_executor(
            config, [CallStep(lambda stage=stage, dirs=dirs, i=step_inputs, n=tasks: open_and_prepare(stage, dirs, i, n))],
            1, logs / "prepare", 0, previous, job_name=f"{name}-prepare",
        )
        shards = _datatrove_executor(
            config, [ShardStep(stage, dirs, quiet=True)], tasks, logs / "shards", stage.gpus_per_task, prep, job_name=name,
        )
        previous = _datatrove_executor(config, [MergeStep(stage, dirs, tasks)], 1, logs / "merge", 0,
                                       shards, job_name=f"{name}-merge")
    last = _datatrove_executor(config, [CallStep(finish)], 1, Path(stages[-1].out_dir) / "_work" / "slurm-logs" / "manifest", 0,
                               previous, job_name="manifest")
    last.run()

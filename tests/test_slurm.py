"""The Slurm path without a cluster: sbatch is replaced by a recorder, then each recorded array job
runs here as Slurm would run it (its pickled executor, one SLURM_ARRAY_TASK_ID at a time)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dill
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stage  # noqa: E402,F401

from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.manifest import Manifest, verify  # noqa: E402
from corpus.run.recipe import Recipe, Step, run_recipe  # noqa: E402


def record_sbatch(monkeypatch) -> list:
    """sbatch replaced by a recorder of (script, arguments)."""
    import datatrove.executor.slurm as slurm

    jobs = []

    def fake_sbatch(script, job_id_retriever, *args):
        jobs.append((script, args))
        return str(1000 + len(jobs))

    monkeypatch.setattr(slurm, "launch_slurm_job", fake_sbatch)
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodelist: [nodelist])  # scontrol's job
    return jobs


def run_jobs(pipelines: list, monkeypatch) -> None:
    """What the cluster does: run the recorded jobs in dependency order, every task of an array."""
    for script, _ in pipelines:
        pik = re.search(r"launch_pickled_pipeline (\S+)", script).group(1)
        array = re.search(r"#SBATCH --array=0-(\d+)", script)
        for task in range(int(array.group(1)) + 1 if array else 1):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
            monkeypatch.setenv("SLURM_NODELIST", "node001")
            with open(pik, "rb") as f:
                dill.load(f).run()


def test_a_run_submitted_to_slurm_gives_the_local_bytes(tmp_path, monkeypatch):
    jobs = record_sbatch(monkeypatch)
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(11):
        (texts / f"t{i:02d}.txt").write_text("word " * i)
    steps = [Step(stage="wordcount", config={"folder": str(texts)})]
    local = run_recipe(Recipe(steps=steps, executor=ExecutorConfig(tasks=3, quiet=True)), tmp_path / "local")

    config = ExecutorConfig(kind="slurm", tasks=3, partition="cpu", time="01:00:00")
    assert run_recipe(Recipe(steps=steps, executor=config), tmp_path / "slurm") is None
    pipelines = [(s, a) for s, a in jobs if "launch_pickled_pipeline" in s]
    assert len(pipelines) == 4  # prepare, shards (array of 3), merge, manifest
    assert "#SBATCH --partition=cpu" in pipelines[1][0] and "#SBATCH --array=0-2" in pipelines[1][0]
    assert all(any(a.startswith("--dependency=afterok:") for a in args) for _, args in pipelines[1:])
    assert not (tmp_path / "slurm" / "manifest.json").exists()  # nothing ran yet

    run_jobs(pipelines, monkeypatch)
    manifest = Manifest.load(tmp_path / "slurm" / "manifest.json")
    assert {e.path: e.sha256 for e in manifest.outputs} == {e.path: e.sha256 for e in local.outputs}
    assert verify(tmp_path / "slurm" / "manifest.json") == []


def test_a_one_task_step_is_one_slurm_job_not_an_array_of_empty_tasks(tmp_path, monkeypatch, texts):
    """A training step on a cluster whose executor splits other steps into 1,000 tasks: one job (with the
    step's GPUs), its folder output listed file by file in the manifest."""
    jobs = record_sbatch(monkeypatch)
    steps = [Step(stage="toy_train", config={"folder": str(texts)})]
    config = ExecutorConfig(kind="slurm", tasks=1000, partition="gpu", time="01:00:00")
    assert run_recipe(Recipe(steps=steps, executor=config), tmp_path / "slurm") is None
    pipelines = [(s, a) for s, a in jobs if "launch_pickled_pipeline" in s]
    assert len(pipelines) == 4 and "#SBATCH --array=0-0" in pipelines[1][0]  # one task, not 1,000
    run_jobs(pipelines, monkeypatch)
    manifest = Manifest.load(tmp_path / "slurm" / "manifest.json")
    assert {"models/toy/config.json", "models/toy/shards/weights.bin"} <= {e.path for e in manifest.outputs}
    assert verify(tmp_path / "slurm" / "manifest.json") == []


def test_slurm_needs_a_partition(tmp_path):
    with pytest.raises(ValueError, match="partition"):
        run_recipe(Recipe(steps=[Step(stage="wordcount", config={"folder": str(tmp_path)})],
                          executor=ExecutorConfig(kind="slurm")), tmp_path / "out")

"""Reruns into the same folder redo exactly what changed: never a stale step, never a corrupt output blessed.

Each test compares the rerun with a fresh run into a new folder (same bytes) and counts which items the
stages really processed (``TOY_CALLS``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_stage  # noqa: E402,F401  (registers the toy stages)

from corpus.cli import main  # noqa: E402
from corpus.run.executor import ExecutorConfig, gpu_slots  # noqa: E402
from corpus.run.manifest import Manifest, verify  # noqa: E402
from corpus.run.recipe import ChangedInputs, Recipe, Step, rebuild, run_recipe  # noqa: E402
from corpus.run.stage import get_stage  # noqa: E402
from corpus.run.workdir import run_lock  # noqa: E402
from schemas import DECISION, read_polars  # noqa: E402


def chain(folder: Path, workers: int = 1, **config) -> Recipe:
    return Recipe(
        steps=[Step(stage="wordcount", config={"folder": str(folder), **config}), Step(stage="kept")],
        executor=ExecutorConfig(workers=workers, tasks=3, quiet=True),
    )


def hashes(manifest: Manifest) -> dict[str, str]:
    return {e.path: e.sha256 for e in manifest.outputs}


def test_an_unchanged_rerun_reuses_every_step(texts, tmp_path, calls):
    first = run_recipe(chain(texts), tmp_path / "out")
    calls()
    again = run_recipe(chain(texts), tmp_path / "out")
    assert calls() == [] and hashes(again) == hashes(first)
    assert [s["stage"] for s in again.steps] == ["wordcount", "kept"]
    assert again.steps[1]["reads"] == {"decisions/wordcount.parquet": hashes(first)["decisions/wordcount.parquet"]}


def test_a_config_change_redoes_the_step_and_the_steps_that_read_it(texts, tmp_path, calls):
    out = tmp_path / "out"
    run_recipe(chain(texts, min_words=3), out)
    calls()
    rerun = run_recipe(chain(texts, min_words=5), out)
    processed = calls()
    assert len([c for c in processed if not c.startswith("kept:")]) == 12  # wordcount redone
    assert any(c.startswith("kept:") for c in processed)  # kept redone: what it reads changed
    fresh = run_recipe(chain(texts, min_words=5), tmp_path / "fresh")
    assert hashes(rerun) == hashes(fresh)
    assert verify(out / "manifest.json") == []


def test_a_how_field_changes_neither_the_identity_nor_the_work(texts, tmp_path, calls):
    out = tmp_path / "out"
    first = run_recipe(chain(texts, batch_hint=1), out)
    calls()
    second = run_recipe(chain(texts, batch_hint=64, api_key="sk-0123456789abcdefghijkl"), out)
    assert calls() == []
    assert [s["identity"] for s in second.steps] == [s["identity"] for s in first.steps]
    assert second.steps[0]["config"]["batch_hint"] == 64  # recorded all the same
    assert "sk-0123456789abcdefghijkl" not in (out / "manifest.json").read_text()


def test_an_added_input_file_redoes_the_chain_and_verify_names_it(texts, tmp_path, calls):
    out = tmp_path / "out"
    run_recipe(chain(texts), out)
    calls()
    (texts / "f999.txt").write_text("a new file with enough words")
    problems = verify(out / "manifest.json")
    assert len(problems) == 1 and "f999.txt" in problems[0] and "new file" in problems[0]
    with pytest.raises(ChangedInputs, match="f999.txt"):
        rebuild(out / "manifest.json", tmp_path / "rebuilt")
    rerun = run_recipe(chain(texts), out)
    assert "f999.txt" in calls()
    assert hashes(rerun) == hashes(run_recipe(chain(texts), tmp_path / "fresh"))
    assert "f999.txt" in read_polars(out / "decisions/kept.parquet", DECISION)["item_id"].to_list()


def test_a_corrupted_output_is_redone_not_blessed(texts, tmp_path, calls):
    out = tmp_path / "out"
    first = run_recipe(chain(texts), out)
    calls()
    victim = out / "decisions/wordcount.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    rerun = run_recipe(chain(texts), out)
    processed = calls()
    assert len(processed) == 12  # wordcount redone; kept reads the same bytes again: reused
    assert hashes(rerun) == hashes(first) and verify(out / "manifest.json") == []


@pytest.mark.parametrize("damage", ["delete_output", "empty_done_marker", "delete_work"])
def test_a_deleted_output_or_broken_marker_is_regenerated(texts, tmp_path, calls, damage, capsys):
    out = tmp_path / "out"
    first = run_recipe(chain(texts), out)
    calls()
    if damage == "delete_output":
        (out / "decisions/kept.parquet").unlink()
    elif damage == "empty_done_marker":
        (out / "_work/01-kept/done.json").write_bytes(b"")
    else:
        import shutil

        shutil.rmtree(out / "_work")
    rerun = run_recipe(chain(texts), out)
    assert hashes(rerun) == hashes(first) and verify(out / "manifest.json") == []
    processed = calls()
    assert processed and (damage == "delete_work" or all(c.startswith("kept:") for c in processed))
    if damage == "empty_done_marker":
        assert "01-kept/done.json is unreadable" in capsys.readouterr().err


def test_a_failed_whole_output_check_leaves_no_output_behind(texts, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="fewer than 100"):
        run_recipe(chain(texts, min_kept=100), out)
    assert not (out / "decisions/wordcount.parquet").exists()  # the next step cannot read a 0-row or failed file
    assert not (out / "manifest.json").exists()
    run_recipe(chain(texts, min_kept=1), out)  # fixed config: runs


def test_two_runs_into_one_folder_are_refused(texts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with run_lock(out), pytest.raises(RuntimeError, match="in use by another sagecorpus run"):
        run_recipe(chain(texts), out)


def test_a_step_that_reads_a_missing_file_names_the_step_to_run_first_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["toy", "kept", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "decisions/wordcount.parquet" in err and f"run 'sagecorpus wordcount --out {out}' first" in err
    assert not out.exists()
    assert main(["curate", "clean", "--out", str(out), "--quiet"]) == 2  # --quiet after the verb
    err = capsys.readouterr().err
    assert "documents.parquet" in err and "'sagecorpus extract --out" in err and not out.exists()


def test_the_step_by_step_cli_flow_accumulates_verifies_and_rebuilds(texts, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["wordcount", "--folder", str(texts), "--out", str(out), "--tasks", "3", "--quiet"]) == 0
    assert main(["--quiet", "toy", "kept", "--out", str(out)]) == 0
    manifest = Manifest.load(out / "manifest.json")
    assert [s["stage"] for s in manifest.steps] == ["wordcount", "kept"]
    assert {e.path for e in manifest.outputs} == {"decisions/wordcount.parquet", "decisions/kept.parquet"}
    assert main(["verify", str(out / "manifest.json"), "--quiet"]) == 0
    _, diffs = rebuild(out / "manifest.json", tmp_path / "rebuilt")
    assert diffs == []
    with (out / "decisions/wordcount.parquet").open("ab") as f:  # one byte appended
        f.write(b"\0")
    assert main(["verify", str(out / "manifest.json")]) == 1
    assert "decisions/wordcount.parquet" in capsys.readouterr().out
    # rerunning the first verb with another config replaces it and drops the step that read its output
    assert main(["wordcount", "--folder", str(texts), "--min-words", "5", "--out", str(out), "--quiet"]) == 0
    manifest = Manifest.load(out / "manifest.json")
    assert [s["stage"] for s in manifest.steps] == ["wordcount"]
    assert not (out / "decisions/kept.parquet").exists()
    assert "kept dropped from" in capsys.readouterr().err


def test_gpu_stages_get_one_device_group_per_local_worker(texts, tmp_path):
    assert gpu_slots(["0", "1", "2"], 1) == [["0"], ["1"], ["2"]]
    assert gpu_slots(["0", "1", "2", "3", "4"], 2) == [["0", "1"], ["2", "3"]]
    recipe = Recipe(steps=[Step(stage="device_probe", config={"folder": str(texts)})],
                    executor=ExecutorConfig(workers=2, tasks=4, gpus=["4", "7"], quiet=True))
    run_recipe(recipe, tmp_path / "out")
    rows = read_polars(tmp_path / "out/decisions/device_probe.parquet", DECISION)
    by_pid: dict[int, set] = {}
    for detail in rows["detail"]:
        d = json.loads(detail)
        by_pid.setdefault(d["pid"], set()).add(d["devices"])
    assert all(len(devices) == 1 for devices in by_pid.values())  # a worker keeps its device
    assert len(by_pid) == 2 and set().union(*by_pid.values()) == {"4", "7"}  # one each


def test_a_missing_optional_dependency_is_named_when_the_stage_is_built():
    with pytest.raises(ImportError, match=r"sagecorpus_no_such_module: pip install 'sagecorpus\[nothing\]'"):
        get_stage("needs_missing")()


def test_verbs_describe_themselves_and_dates_are_checked(capsys):
    for verb in (["run"], ["verify"], ["rebuild"]):
        with pytest.raises(SystemExit):
            main([*verb, "--help"])
        help_text = capsys.readouterr().out
        assert "description" not in help_text and len(help_text.split("\n\n")[1]) > 40
    with pytest.raises(SystemExit):
        main(["ingest", "--out", "x", "--since", "2007/04/01"])
    assert "use YYYY-MM-DD" in capsys.readouterr().err


def test_an_input_that_is_a_fifo_is_recorded_unavailable_not_waited_on(tmp_path, capfd):
    import os

    fifo = tmp_path / "questions.json"
    os.mkfifo(fifo)
    from corpus.run.workdir import hash_reads

    stage = get_stage("kept")({"counts": str(fifo)}).bind(tmp_path / "out")
    reads = hash_reads(stage, [str(fifo)], {})
    assert [(e.path, e.sha256) for e in reads.inputs] == [(str(fifo), "unavailable")]
    assert "is a FIFO" in capfd.readouterr().err


def test_every_step_validates_its_inputs_before_any_step_runs(texts, tmp_path, calls, monkeypatch):
    def refuse(self):
        raise ValueError(f"{self.config.counts}: not a valid file")

    monkeypatch.setattr(get_stage("kept"), "validate", refuse)
    with pytest.raises(ValueError, match="not a valid file"):
        run_recipe(chain(texts), tmp_path / "out")
    assert calls() == [] and not (tmp_path / "out").exists()  # wordcount, the first step, never ran


def test_nougat_runtime_settings_are_how_its_generation_settings_are_what():
    from corpus.extract.stage import Extract

    def what(**nougat):
        return Extract({"ocr_window": nougat.pop("window", 64), "nougat": nougat}).what_config()

    base = what(device="cpu", batch_size=2, max_new_tokens=40)
    assert what(device="cuda", batch_size=32, max_new_tokens=40, render_workers=4, window=8) == base
    assert what(device="cpu", batch_size=2, max_new_tokens=80) != base


def test_begin_runs_each_time_a_step_is_started_or_resumed_never_when_reused(texts, tmp_path, monkeypatch):
    begins = tmp_path / "begins.txt"
    monkeypatch.setenv("TOY_BEGINS", str(begins))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(chain(texts, crash_on="f005.txt"), tmp_path / "out")
    assert begins.read_text().split() == ["wordcount"]
    run_recipe(chain(texts, crash_on="f005.txt"), tmp_path / "out")  # resumed: begin again (a new invocation)
    assert begins.read_text().split() == ["wordcount", "wordcount"]
    run_recipe(chain(texts, crash_on="f005.txt"), tmp_path / "out")  # reused: no begin
    assert begins.read_text().split() == ["wordcount", "wordcount"]

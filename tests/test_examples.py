"""The full-scale recipe in examples/ (AstroSage-8B on a Slurm cluster with vLLM servers) cannot run here:
what can be checked is that it is a valid recipe — every step's config is valid for its stage, every
run-folder file a step reads is written by an earlier step, the training steps get their GPUs — so a user
who fills in the downloads it names is not stopped by the file itself."""

from __future__ import annotations

from pathlib import Path

from corpus.run.recipe import build_stages, check_chain, load_recipe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_full_scale_recipe_is_a_valid_chain_from_ingest_to_report(tmp_path):
    recipe = load_recipe(EXAMPLES / "astrosage.yaml")
    stages = build_stages(recipe, tmp_path / "run")
    assert [s.name for s in stages] == ["ingest", "extract", "clean", "dedup", "filter", "decontaminate", "qa_chunk",
                                        "qa_generate", "qa_grade", "qa_select", "train_cpt", "train_sft", "merge",
                                        "eval", "card", "report"]
    check_chain(stages, tmp_path / "run")  # raises, naming the step, when a read has no writer before it
    by_name = {s.name: s for s in stages}
    assert by_name["train_cpt"].config.processes == 8 and by_name["train_cpt"].task_count(recipe.executor.tasks) == 1
    assert by_name["train_sft"].config.model == "{out}/models/cpt"
    assert "models/sft/" in by_name["merge"].reads() and "models/merged/" in by_name["eval"].reads()
    assert by_name["qa_generate"].config.model != by_name["qa_grade"].config.model
    assert recipe.executor.kind == "slurm" and recipe.executor.partition

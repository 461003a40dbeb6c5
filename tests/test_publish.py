"""sagecorpus publish up to the network call: exactly the planned files go to create_repo + upload_folder
(HfApi's methods replaced by recorders), the dry run lists them, disallowed licences are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpus.cli import main
from corpus.publish.card import write_card
from corpus.publish.hub import LicenseRefused, PublishError, plan_upload, publish
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe

TOKEN = "hf_TESTtoken0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def run_dir(fixtures, tmp_path_factory) -> Path:
    """A run of the real arXiv metadata head (100 papers: 87 assumed-1991-2003, 11 arxiv-nonexclusive,
    2 cc-by-nc-nd-4.0), metadata only, with its card."""
    out = tmp_path_factory.mktemp("pub") / "run"
    meta = str(fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl")
    recipe = Recipe(steps=[Step(stage="ingest", config={"metadata": [meta], "categories": [], "require_files": False})],
                    executor=ExecutorConfig(tasks=2, quiet=True))
    run_recipe(recipe, out)
    write_card(out)
    return out


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """HfApi's create_repo and upload_folder record their calls instead of reaching the Hub; the token
    comes from the environment only."""
    import huggingface_hub

    calls = []
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no login cache of this machine
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **kw: calls.append(("create_repo", a, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, *a, **kw: calls.append(("upload_folder", a, kw)))
    return calls


def uploaded(folder: Path, allow_patterns: list[str]) -> list[str]:
    """What upload_folder sends: huggingface_hub's own filter over every file of the folder."""
    from huggingface_hub.utils import filter_repo_objects

    every = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(filter_repo_objects(every, allow_patterns=allow_patterns))


def test_dry_run_lists_exactly_the_files_and_where_and_sends_nothing(run_dir, hub, capsys):
    assert main(["publish", str(run_dir), "me/astro", "--dry-run", "--licenses",
                 "cc-by-nc-nd-4.0,arxiv-nonexclusive,assumed-1991-2003"]) == 0
    out = capsys.readouterr().out
    assert "would upload dataset" in out and "https://huggingface.co/datasets/me/astro (public): 4 files" in out
    listed = [line.split("\t")[0].strip() for line in out.splitlines() if line.startswith("  ") and "\t" in line]
    assert listed == ["README.md", "decisions/ingest.parquet", "manifest.json", "papers.parquet"]
    assert not any(p.startswith("_work") for p in listed) and hub == []


def test_publish_refuses_papers_under_licences_not_allowed(run_dir, hub, capsys):
    with pytest.raises(LicenseRefused, match=r"arxiv-nonexclusive: 11 paper\(s\), assumed-1991-2003: 87 paper\(s\)"):
        publish(run_dir, "me/astro")  # default: the redistributable licences only
    assert main(["publish", str(run_dir), "me/astro", "--licenses", "cc-by-nc-nd-4.0,arxiv-nonexclusive"]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "assumed-1991-2003: 87 paper(s)" in err and "arxiv-nonexclusive: 11" not in err
    with pytest.raises(LicenseRefused):  # a dry run checks too
        publish(run_dir, "me/astro", dry_run=True)
    assert hub == []


def test_publish_uploads_exactly_the_planned_files_with_the_token_from_the_environment(run_dir, hub, capsys):
    assert main(["publish", str(run_dir), "me/astro", "--private", "--licenses",
                 "cc-by-nc-nd-4.0,arxiv-nonexclusive,assumed-1991-2003"]) == 0
    (create, args, kw), (upload, _, up) = hub
    assert create == "create_repo" and args == ("me/astro",)
    assert kw == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert upload == "upload_folder" and up["repo_id"] == "me/astro" and up["repo_type"] == "dataset"
    assert Path(up["folder_path"]) == run_dir and "token" not in up and "token" not in kw
    plan = plan_upload(run_dir, "me/astro")
    assert uploaded(run_dir, up["allow_patterns"]) == plan.files
    assert "published: https://huggingface.co/datasets/me/astro" in capsys.readouterr().out
    assert not any(TOKEN.encode() in p.read_bytes() for p in run_dir.rglob("*") if p.is_file())


def test_force_publishes_despite_the_licences(run_dir, hub):
    plan = publish(run_dir, "me/astro", force=True)
    assert plan.licenses == {"arxiv-nonexclusive": 11, "assumed-1991-2003": 87, "cc-by-nc-nd-4.0": 2}
    assert [c[0] for c in hub] == ["create_repo", "upload_folder"] and hub[0][2]["private"] is None


def test_no_token_is_an_error_before_any_call(run_dir, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="no Hugging Face token: set HF_TOKEN"):
        publish(run_dir, "me/astro", force=True)
    assert hub == []


def test_a_run_folder_without_its_card_or_a_bad_repo_id_is_refused(run_dir, tmp_path):
    with pytest.raises(PublishError, match=f"write it first: sagecorpus card {tmp_path}"):
        plan_upload(tmp_path, "me/astro")
    with pytest.raises(PublishError, match="not a Hub repo id"):
        plan_upload(run_dir, "astro")


def test_a_table_changed_since_the_run_is_refused(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    data = bytearray((copy / "papers.parquet").read_bytes())
    data[100] ^= 1
    (copy / "papers.parquet").write_bytes(bytes(data))
    with pytest.raises(PublishError, match="papers.parquet changed since the run wrote it"):
        plan_upload(copy, "me/astro")


def model_folder(root: Path, card: bool = True) -> Path:
    (root / "checkpoint-10").mkdir(parents=True)
    (root / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    (root / "_work").mkdir()
    (root / "_work" / "done.json").write_text("{}")
    (root / ".hidden").write_text("x")
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "tokenizer.json").write_text("{}")
    (root / "odd[1]*.txt").write_text("x")  # patterns are escaped: exactly this file
    (root / "odd1x.txt").write_text("x")
    if card:
        (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# model\n")
    return root


def test_a_model_folder_is_published_with_its_card_and_without_checkpoints(tmp_path, hub):
    folder = model_folder(tmp_path / "sft")
    plan = publish(folder, "me/astro-8b", licenses=None)
    expected = ["README.md", "config.json", "model.safetensors", "odd1x.txt", "odd[1]*.txt", "tokenizer.json"]
    assert plan.repo_type == "model" and plan.files == expected and plan.url == "https://huggingface.co/me/astro-8b"
    up = hub[1][2]
    assert up["repo_type"] == "model" and uploaded(folder, up["allow_patterns"]) == expected
    with pytest.raises(PublishError, match="without its model card"):
        plan_upload(model_folder(tmp_path / "nocard", card=False), "me/x")

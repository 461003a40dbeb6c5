"""Stages from other packages: registered through the ``sagecorpus.stages`` entry-point group, they run
from a recipe, from their own CLI verb and from ``rebuild``, in fresh processes that import nothing but
what the entry point names (``corpus`` never imports them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corpus.run.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A package outside corpus/ that adds a stage (as qa_synth/ and trainer/ do)."""
from pathlib import Path

from corpus.run.stage import Stage, StageConfig, path_field, register_stage, register_verb_group

register_verb_group("probe", "the probe package's steps")


class LengthsConfig(StageConfig):
    folder: str = path_field(description="folder of .txt files")


@register_stage
class Lengths(Stage):
    name = "probe_lengths"
    verb = "probe lengths"
    config_class = LengthsConfig
    description = "length of each text file"

    def plan(self):
        return sorted(p.name for p in Path(self.config.folder).glob("*.txt"))

    def process(self, items):
        for name in items:
            n = len((Path(self.config.folder) / name).read_text())
            yield self.decisions_file, [self.decision(name, "kept", "measured", score=float(n))]
'''


def make_plugin(site: Path) -> None:
    (site / "probe_plugin").mkdir(parents=True)
    (site / "probe_plugin" / "__init__.py").write_text(PLUGIN)
    dist = site / "probe_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[sagecorpus.stages]\nprobe = probe_plugin\n")


def cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "corpus.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_stage_from_another_package_runs_from_its_verb_a_recipe_and_rebuild(tmp_path):
    site = tmp_path / "site"
    make_plugin(site)
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(5):
        (texts / f"t{i}.txt").write_text("x" * i)

    helped = cli(site, "--help")
    assert helped.returncode == 0 and "probe" in helped.stdout
    verb = cli(site, "probe", "lengths", "--folder", str(texts), "--out", str(tmp_path / "a"), "--quiet")
    assert verb.returncode == 0, verb.stderr
    (tmp_path / "recipe.yaml").write_text(f"steps:\n  - stage: probe_lengths\n    config: {{folder: {texts}}}\n")
    ran = cli(site, "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "b"), "--quiet")
    assert ran.returncode == 0, ran.stderr
    a, b = (Manifest.load(tmp_path / d / "manifest.json") for d in "ab")
    assert [s["stage"] for s in a.steps] == ["probe_lengths"]
    assert {e.path: e.sha256 for e in a.outputs} == {e.path: e.sha256 for e in b.outputs}
    rebuilt = cli(site, "rebuild", str(tmp_path / "a" / "manifest.json"), "--out", str(tmp_path / "c"))
    assert rebuilt.returncode == 0 and "identical bytes" in rebuilt.stdout, rebuilt.stderr
    # without the package installed, the stage is unknown and says which are known
    missing = cli(tmp_path / "nothing", "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "d"))
    assert missing.returncode == 2 and "unknown stage 'probe_lengths'" in missing.stderr

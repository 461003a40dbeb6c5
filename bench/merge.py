"""bench/merge.py: `trainer.merge` on two ~500M-parameter random Llamas (fp32, several shards): peak RSS
against the model's size, and against mergekit's linear merge of the same inputs in the same run
(identical tensors, wall time); plus a check that linear, SLERP, task arithmetic and TIES configs give
mergekit's tensors (float32 and bfloat16 compute) on ~45M-parameter models.

Usage: ``python bench/merge.py [--quick] [--mergekit PATH] [--work DIR] [--pairs N]``.

mergekit (LGPL-3.0) is never a dependency of sagecorpus: it is installed in the bench's own
environment (see bench/README.md) and run as a command, ``mergekit-yaml`` (``--mergekit`` or
``$MERGEKIT_YAML``; default ``/tmp/mergekit-venv/bin/mergekit-yaml``). Without it the mergekit figures
are null and a line on stderr says so.

Each merge runs in its own process (ours: ``python -c 'from trainer.merge import merge; ...'``; mergekit's:
``mergekit-yaml CONFIG OUT``) measured by ``os.wait4``: wall time and peak RSS of that process. The
inputs are read once before timing so both sides find them in the page cache. ``--quick``: the ~45M
models for every figure (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _emit import emit as _emit

ROOT = Path(__file__).resolve().parents[1]
BENCH = "merge"
FULL = {"hidden": 1536, "intermediate": 4096, "layers": 14, "vocab": 32000}  # ~494M parameters
SMALL = {"hidden": 512, "intermediate": 1408, "layers": 4, "vocab": 32000}  # ~45M; embeddings > 2^20 elements
SHARD_BYTES = 500_000_000


def emit(*args, **kw) -> None:
    _emit(BENCH, *args, **kw)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- inputs


def shapes(size: dict) -> list[tuple[str, tuple[int, ...]]]:
    h, i, v = size["hidden"], size["intermediate"], size["vocab"]
    out = [("model.embed_tokens.weight", (v, h))]
    for layer in range(size["layers"]):
        p = f"model.layers.{layer}."
        out += [(p + f"self_attn.{n}_proj.weight", (h, h)) for n in "qkvo"]
        out += [(p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]


def build_model(folder: Path, size: dict, seed: int, tokenizer: Path) -> Path:
    """A random Llama in fp32 safetensors shards of <= 500 MB with an index, config.json and a tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    plan: list[list[tuple[str, tuple]]] = [[]]
    used = 0
    for name, shape in shapes(size):
        n = 4 * int(torch.tensor(shape).prod())
        if plan[-1] and used + n > SHARD_BYTES:
            plan.append([])
            used = 0
        plan[-1].append((name, shape))
        used += n
    weight_map, total = {}, 0
    for k, group in enumerate(plan, 1):
        file = f"model-{k:05d}-of-{len(plan):05d}.safetensors"
        tensors = {}
        for name, shape in group:
            t = torch.randn(shape, generator=generator) * 0.02
            if name.endswith("norm.weight"):
                t += 1
            tensors[name] = t
            weight_map[name] = file
            total += t.numel() * 4
        save_file(tensors, folder / file, metadata={"format": "pt"})
        del tensors
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    LlamaConfig(vocab_size=size["vocab"], hidden_size=size["hidden"], intermediate_size=size["intermediate"],
                num_hidden_layers=size["layers"], num_attention_heads=size["hidden"] // 64,
                num_key_value_heads=size["hidden"] // 64, tie_word_embeddings=False,
                architectures=["LlamaForCausalLM"], dtype="float32").save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer / f).is_file():
            shutil.copyfile(tokenizer / f, folder / f)
    return folder


def weight_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def warm(folders: list[Path]) -> None:
    """Read every weight file once, so both sides find the inputs in the page cache."""
    for folder in folders:
        for f in sorted(folder.glob("*.safetensors")):
            with open(f, "rb") as h:
                while h.read(1 << 24):
                    pass


# ------------------------------------------------------------------------------------------- running


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS bytes) of one command, from ``os.wait4`` on it alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return wall, usage.ru_maxrss * 1024


def ours(config: Path, out: Path) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    code = (f"from trainer.merge import merge; merge({str(config)!r}, {str(out)!r}, quiet=True)")
    return timed([sys.executable, "-c", code], {"PYTHONPATH": str(ROOT)})


def theirs(mergekit: str, config: Path, out: Path) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    return timed([mergekit, str(config), str(out), "--quiet"])


def tensors_max_abs_diff(a: Path, b: Path) -> tuple[float, int]:
    """(max |a - b| over every tensor, tensors compared); tensor names and dtypes must agree."""
    import torch
    from safetensors import safe_open

    def index(folder):
        found = {}
        for f in sorted(folder.glob("*.safetensors")):
            with safe_open(f, "pt") as h:
                found.update(dict.fromkeys(h.keys(), f))
        return found

    ia, ib = index(a), index(b)
    if ia.keys() != ib.keys():
        raise RuntimeError(f"tensor names differ: {sorted(set(ia) ^ set(ib))[:5]}")
    worst = 0.0
    for name in sorted(ia):
        with safe_open(ia[name], "pt") as ha, safe_open(ib[name], "pt") as hb:
            ta, tb = ha.get_tensor(name), hb.get_tensor(name)
        if ta.dtype != tb.dtype or ta.shape != tb.shape:
            raise RuntimeError(f"{name}: {ta.dtype} {tuple(ta.shape)} vs {tb.dtype} {tuple(tb.shape)}")
        if not torch.equal(ta, tb):
            worst = max(worst, (ta.double() - tb.double()).abs().max().item())
    return worst, len(ia)


def method_configs(a: Path, b: Path, c: Path) -> dict[str, dict]:
    """The methods' configs compared with mergekit: mergekit's parameter forms (gradients, filters) included."""
    return {
        "linear": {"merge_method": "linear", "dtype": "float32", "models": [
            {"model": str(a), "parameters": {"weight": 0.3}}, {"model": str(b), "parameters": {"weight": [0.2, 0.9]}}]},
        "slerp": {"merge_method": "slerp", "base_model": str(a), "dtype": "float32",
                  "models": [{"model": str(a)}, {"model": str(b)}],
                  "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3]},
                                       {"filter": "mlp", "value": [1, 0.5]}, {"value": 0.4}]}},
        "slerp_bf16": {"merge_method": "slerp", "base_model": str(a), "dtype": "bfloat16",
                       "models": [{"model": str(a)}, {"model": str(b)}], "parameters": {"t": 0.3}},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": str(c), "dtype": "float32", "models": [
            {"model": str(a), "parameters": {"weight": 0.6}}, {"model": str(b), "parameters": {"weight": 0.5}}],
            "parameters": {"lambda": 0.8}},
        "ties": {"merge_method": "ties", "base_model": str(c), "dtype": "float32", "models": [
            {"model": str(a), "parameters": {"weight": 0.7, "density": 0.5}},
            {"model": str(b), "parameters": {"weight": [0.2, 0.6], "density": 0.3}}],
            "parameters": {"normalize": True}},
        "ties_bf16": {"merge_method": "ties", "base_model": str(c), "dtype": "bfloat16", "out_dtype": "float16",
                      "models": [{"model": str(a), "parameters": {"weight": 1.0, "density": 0.4}},
                                 {"model": str(b), "parameters": {"weight": 1.0, "density": 0.7}}],
                      "parameters": {"normalize": False, "rescale": True}},
    }


def main() -> None:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the ~45M models for every figure (smoke run)")
    ap.add_argument("--mergekit", default=os.environ.get("MERGEKIT_YAML", "/tmp/mergekit-venv/bin/mergekit-yaml"),
                    help="mergekit-yaml of the bench's own environment (default $MERGEKIT_YAML or /tmp/mergekit-venv)")
    ap.add_argument("--work", default="/tmp/sagecorpus-bench-merge", help="models and outputs (kept for reruns)")
    ap.add_argument("--pairs", type=int, default=None, help="alternated (ours, mergekit) timing pairs (default 2)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    mergekit = args.mergekit if Path(args.mergekit).is_file() else None
    if mergekit is None:
        say(f"mergekit-yaml not found at {args.mergekit}: mergekit figures are null (see bench/README.md)")

    sys.path.insert(0, str(ROOT / "examples"))
    from tiny_lm import build_tiny_lm

    tokenizer = work / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file():
        build_tiny_lm(tokenizer, seed=0)

    # ---- every method against mergekit on the small models
    small = {k: build_model(work / f"small-{k}", SMALL, seed, tokenizer) for k, seed in (("a", 1), ("b", 2), ("c", 3))}
    if mergekit:
        for tag, config in method_configs(small["a"], small["b"], small["c"]).items():
            path = work / f"{tag}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            ours(path, work / f"ours-{tag}")
            theirs(mergekit, path, work / f"mergekit-{tag}")
            diff, n = tensors_max_abs_diff(work / f"ours-{tag}", work / f"mergekit-{tag}")
            say(f"{tag}: max |ours - mergekit| = {diff} over {n} tensors")
            emit(f"max_abs_diff_vs_mergekit_{tag}", diff, "abs", anchor="mergekit 0.1.5 (same config, same inputs)",
                 target=0, better="lower")

    # ---- the linear merge of two ~500M models: memory and time
    size = SMALL if args.quick else FULL
    label = "small" if args.quick else "full"
    a = build_model(work / f"{label}-a", size, 11, tokenizer)
    b = build_model(work / f"{label}-b", size, 12, tokenizer)
    model_bytes = weight_bytes(a)
    say(f"models: {model_bytes / 1e9:.2f} GB fp32 each ({model_bytes // 4 / 1e6:.0f}M parameters), "
        f"{len(list(a.glob('*.safetensors')))} shards")
    config = work / "linear-75-25.yaml"
    config.write_text(yaml.safe_dump({"merge_method": "linear", "dtype": "float32", "models": [
        {"model": str(a), "parameters": {"weight": 0.75}}, {"model": str(b), "parameters": {"weight": 0.25}}]}))
    warm([a, b])
    mine, anchor, rss, anchor_rss = [], [], [], []
    for k in range(args.pairs or (1 if args.quick else 2)):
        wall, peak = ours(config, work / "ours-linear")
        mine.append(wall)
        rss.append(peak)
        say(f"pair {k}: ours {wall:.1f} s, peak RSS {peak / 1e6:.0f} MB")
        if mergekit:
            wall, peak = theirs(mergekit, config, work / "mergekit-linear")
            anchor.append(wall)
            anchor_rss.append(peak)
            say(f"pair {k}: mergekit {wall:.1f} s, peak RSS {peak / 1e6:.0f} MB")
    emit("peak_rss_over_model_size", round(max(rss) / model_bytes, 3), "ratio",
         anchor=f"one input model's fp32 weights ({model_bytes / 1e9:.2f} GB)", target=0.5, better="lower")
    emit("peak_rss_mb", round(max(rss) / 1e6), "MB", anchor="mergekit 0.1.5, same merge" if mergekit else None,
         anchor_value=round(max(anchor_rss) / 1e6) if anchor_rss else None, better="lower", digits=3)
    if mergekit:
        diff, n = tensors_max_abs_diff(work / "ours-linear", work / "mergekit-linear")
        say(f"linear 0.75/0.25: max |ours - mergekit| = {diff} over {n} tensors")
        emit("max_abs_diff_vs_mergekit", diff, "abs", anchor="mergekit 0.1.5 (same config, same inputs)",
             target=0, better="lower")
    emit("time_vs_mergekit", round(statistics.median(mine), 2), "s",
         anchor="mergekit 0.1.5 mergekit-yaml, same merge, alternated" if mergekit else None,
         anchor_value=round(statistics.median(anchor), 2) if anchor else None, target=1.0, target_on="ratio",
         better="lower", digits=3)


if __name__ == "__main__":
    main()

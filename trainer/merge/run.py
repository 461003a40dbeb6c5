"""Merge models tensor by tensor: checks first, then stream, write shards, copy the model's files, card, manifest.

``merge(config, out_dir)`` (the Python API; ``sagecorpus merge CONFIG OUT_DIR`` and the recipe stage
``merge`` call it):

1. reads the config (:func:`trainer.merge.config.load_config`) and every model's config.json and
   safetensors headers; checks architecture, tensor names and shapes, vocabularies
   (:mod:`trainer.merge.checks`) before any tensor is read;
2. for each tensor, in the order of the reference model's files (the base model, else the first):
   reads it from every model, casts to ``dtype`` (the compute dtype: mergekit's ``dtype``; by default
   the inputs' own), merges it (:mod:`trainer.merge.methods`), casts to ``out_dtype`` (by default the
   compute dtype) and appends it to the output shard being written (:mod:`trainer.merge.shards`);
3. copies config.json (its dtype set to the saved one) and generation_config.json from the reference
   model, the tokenizer and chat template from ``tokenizer_source`` (default: the reference model) or
   sets ``chat_template``;
4. writes the model card (README.md, :mod:`trainer.merge.card`) and ``manifest.json`` (run-manifest
   format: the config, each input model's fingerprint, every weight file read and file written with its
   sha256; ``sagecorpus verify`` checks it).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from corpus.model_files import model_fingerprint
from corpus.run.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    expand_inputs,
    input_entry,
    now,
    output_entry,
    run_record,
)
from trainer.merge.checks import (
    check_architecture,
    check_tensors,
    check_vocabularies,
    read_model_config,
)
from trainer.merge.config import (
    MergeConfig,
    MergeConfigError,
    layer_position,
    load_config,
    resolve,
)
from trainer.merge.methods import Inputs, get_method
from trainer.merge.shards import HashPool, ModelWeights, ShardWriter, plan_shards

__all__ = ["DEFAULT_SHARD_SIZE", "MergeResult", "merge", "parse_size"]

DEFAULT_SHARD_SIZE = "5GB"
BLOCK_BYTES = 32 << 20
"""An elementwise method (linear) merges a large tensor this many bytes of rows at a time."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "float64": torch.float64}
DTYPE_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


@dataclass
class MergeResult:
    """What a merge left: the model folder, its manifest and card, and figures about the work."""

    out_dir: Path
    manifest: Path | None  # None when the caller (a recipe step) records the merge in its run's manifest
    card: Path
    stats: dict = field(default_factory=dict)


def parse_size(value: str | int) -> int:
    """Bytes from ``5GB``, ``500MB``, ``2e9`` or an int (powers of 1000, as transformers' shard sizes)."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper().removesuffix("B")
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a size (e.g. 5GB, 500MB)") from None


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _reference(config: MergeConfig) -> Path:
    return config.base_model or config.models[0].path


def _tokenizer_folder(config: MergeConfig) -> Path:
    source = config.tokenizer_source
    if source in (None, "union"):  # union of identical vocabularies (checked) is the vocabulary itself
        return _reference(config)
    if source == "base":
        return config.base_model
    return Path(source)


def _copy_model_files(config: MergeConfig, out_dir: Path, out_dtype: torch.dtype | None) -> None:
    reference = _reference(config)
    cfg = read_model_config(reference)
    if out_dtype is not None:
        name = DTYPE_NAMES[out_dtype]
        keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["dtype"]
        for key in keys:
            cfg[key] = name
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if (reference / "generation_config.json").is_file():
        shutil.copyfile(reference / "generation_config.json", out_dir / "generation_config.json")
    tokenizer = _tokenizer_folder(config)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copyfile(tokenizer / name, out_dir / name)
    template = config.chat_template
    if template == "auto":
        template = _most_common_template(config.inputs)
    if template:
        for stale in ("chat_template.json",):
            (out_dir / stale).unlink(missing_ok=True)
        tok_cfg = out_dir / "tokenizer_config.json"
        if tok_cfg.is_file():
            data = json.loads(tok_cfg.read_text())
            if data.pop("chat_template", None) is not None:
                tok_cfg.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        (out_dir / "chat_template.jinja").write_text(template)


def _most_common_template(folders: list[Path]) -> str | None:
    """``chat_template: auto``: the template most of the models have (mergekit's rule)."""
    from transformers import AutoTokenizer

    templates = []
    for folder in folders:
        try:
            template = AutoTokenizer.from_pretrained(folder).chat_template
        except (OSError, ValueError):  # a model without a loadable tokenizer has no template to vote with
            continue
        if isinstance(template, dict):
            template = template.get("default")
        if template:
            templates.append(template.strip())
    return Counter(templates).most_common(1)[0][0] if templates else None


def merge(config: str | Path | dict | MergeConfig, out_dir: str | Path, *, max_shard_size: str | int = DEFAULT_SHARD_SIZE,
          quiet: bool = False, write_manifest: bool = True) -> MergeResult:
    """Merge the models of ``config`` (a mergekit YAML path, a mapping, or a loaded :class:`MergeConfig`)
    into ``out_dir`` (created; it must not hold files). See the module doc. ``write_manifest=False``: no
    ``manifest.json`` in the folder (the recipe step: the run's manifest records the step, its inputs and
    every file of the folder, and a rebuild must give the same bytes, which a run record's times would not).

    Raises :class:`MergeConfigError` or :class:`trainer.merge.checks.MergeCheckError` before any work for a
    config or models we cannot merge as asked.
    """
    start = now()
    config = config if isinstance(config, MergeConfig) else load_config(config)
    method = get_method(config.merge_method)
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise MergeConfigError(f"{out_dir}: the output folder exists and is not empty")
    shard_bytes = parse_size(max_shard_size)

    inputs = config.inputs
    pool = HashPool()
    weights = {path: ModelWeights(path, pool) for path in inputs}
    created = not out_dir.exists()
    try:
        check_architecture({p: read_model_config(p) for p in inputs})
        check_tensors(weights)
        source = _tokenizer_folder(config)  # a tokenizer from outside the inputs must match them too
        vocab = check_vocabularies(inputs + ([source] if source not in inputs else []), config.vocab_policy)
        if config.tokenizer_source == "union" and not vocab["same"]:
            raise MergeConfigError(f"{config.origin}: `tokenizer_source: union`: building a union tokenizer is not "
                                   "supported, and the vocabularies differ")
        result = _stream(config, method, weights, out_dir, shard_bytes, pool, quiet)
        fingerprints = {p: model_fingerprint(p, file_hashes=w.file_hashes()) for p, w in weights.items()}
    except BaseException:
        if out_dir.is_dir():  # a failed merge leaves no half-written model behind (the folder was new or empty)
            if created:
                shutil.rmtree(out_dir, ignore_errors=True)
            else:
                for f in out_dir.iterdir():
                    if f.is_dir():
                        shutil.rmtree(f, ignore_errors=True)
                    else:
                        f.unlink(missing_ok=True)
        raise
    finally:
        for w in weights.values():
            w.close()
        pool.close()

    _copy_model_files(config, out_dir, result["out_dtype"])
    out_dtype_name = DTYPE_NAMES.get(result["out_dtype"], "the inputs' dtypes")
    card = out_dir / "README.md"
    from trainer.merge.card import merge_card

    merge_card(config, fingerprints, method, out_dtype_name, out_dir.name).save(card)
    written = result.pop("hashes")
    outputs = [output_entry(out_dir, f.name, written.get(f.name)) for f in sorted(out_dir.iterdir())
               if f.is_file() and f.name != MANIFEST_NAME]
    streamed = {str(p / name): digest for p, fp in fingerprints.items() for name, digest in fp["files"].items()}
    input_entries = [FileEntry(f, Path(f).stat().st_size, streamed[f]) if f in streamed else input_entry(f)
                     for f in expand_inputs([str(p) for p in inputs])]
    stats = {**result, "out_dtype": out_dtype_name, "vocabulary": vocab,
             "inputs": [{k: fp[k] for k in ("model_id", "license", "sha256")} for fp in fingerprints.values()]}
    _say(quiet, f"merge: {result['tensors']} tensors of {len(inputs)} models -> {out_dir} "
                f"({result['shards']} shard(s), {out_dtype_name})")
    if not write_manifest:
        return MergeResult(out_dir, None, card, stats)
    manifest = Manifest(
        steps=[{"stage": "merge", "config": config.as_dict(), "config_source": config.source}],
        sources=[str(p) for p in inputs], inputs=input_entries, outputs=outputs,
        seeds={"seed": config.seed}, models=[{"path": str(p), **fp} for p, fp in fingerprints.items()],
        stats={"merge": stats}, run=run_record(start),
    )
    manifest_path = manifest.save(out_dir / MANIFEST_NAME)
    return MergeResult(out_dir, manifest_path, card, stats)


def _merge_one(config: MergeConfig, method, name: str, tensors: list[torch.Tensor], base_index: int | None,
               num_layers: int, compute: torch.dtype | None, shared_sources: list, per_model_sources: list) -> torch.Tensor:
    """One tensor (or block of rows) merged: inputs cast to the compute dtype, parameters resolved for it."""
    work = compute
    if work is None:
        work = tensors[0].dtype
        for t in tensors[1:]:
            work = torch.promote_types(work, t.dtype)
    tensors = [t.to(work) for t in tensors]
    t_pos = layer_position(name, num_layers)
    shared = {k: resolve(k, kind, default, shared_sources, name, t_pos)
              for k, (kind, default) in method.shared_parameters.items()}
    per_input = []
    for i in range(len(tensors)):
        if i == base_index and not method.base_takes_input_parameters:
            per_input.append({})
            continue
        per_input.append({k: resolve(k, kind, default, per_model_sources[i], name, t_pos)
                          for k, (kind, default) in method.input_parameters.items()})
    return method.merge(Inputs(name, tensors, base_index, per_input, config.seed), **shared)


def _stream(config: MergeConfig, method, weights: dict[Path, ModelWeights], out_dir: Path, shard_bytes: int,
            pool: HashPool, quiet: bool) -> dict:
    """Merge every tensor and write the shards; returns counts, the saved dtype and the files' hashes."""
    inputs = config.inputs
    reference = weights[_reference(config)]
    base_index = inputs.index(config.base_model) if config.base_model is not None else None
    num_layers = int(read_model_config(_reference(config)).get("num_hidden_layers") or 1)
    compute = TORCH_DTYPES[config.dtype] if config.dtype else None
    forced_out = TORCH_DTYPES[config.out_dtype] if config.out_dtype else None

    names = reference.names_in_file_order()
    plan = []
    out_dtypes = set()
    for name in names:
        dtypes = [weights[p].tensors[name].dtype for p in inputs]
        if not all(d.is_floating_point for d in dtypes):
            out = reference.tensors[name].dtype  # integer buffers are copied from the reference model
        else:
            work = compute
            if work is None:
                work = dtypes[0]
                for d in dtypes[1:]:
                    work = torch.promote_types(work, d)
            out = forced_out or work
            out_dtypes.add(out)
        plan.append((name, out, reference.tensors[name].shape))

    # per-tensor parameter sources, highest precedence first (mergekit: the model's own, then the config's)
    shared_sources = [("parameters", config.parameters)]
    per_model_sources = [[(f"models[{config.entry(p).name}].parameters", config.entry(p).parameters),
                          ("parameters", config.parameters)] for p in inputs]

    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out_dir, plan_shards(plan, shard_bytes), pool)
    ref_index = inputs.index(_reference(config))
    largest = 0
    try:
        for name, out, shape in plan:
            info = reference.tensors[name]
            largest = max(largest, info.nbytes)
            blocks = [None]
            if method.elementwise and info.nbytes > BLOCK_BYTES and shape:
                step = max(1, BLOCK_BYTES // max(1, info.nbytes // shape[0]))
                blocks = [(r, min(r + step, shape[0])) for r in range(0, shape[0], step)]
            for rows in blocks:
                tensors = [weights[p].read(name, rows) for p in inputs]
                if not all(t.is_floating_point() for t in tensors):
                    merged = tensors[ref_index]  # integer buffers: the reference model's, never averaged
                else:
                    merged = _merge_one(config, method, name, tensors, base_index, num_layers, compute,
                                        shared_sources, per_model_sources).to(out)
                del tensors
                writer.write(name, merged, rows)
                del merged
        hashes = writer.finish()
    except BaseException:
        writer.abort()
        raise
    out_dtype = out_dtypes.pop() if len(out_dtypes) == 1 else None
    return {"tensors": len(plan), "shards": len(writer.plans), "largest_tensor_bytes": largest,
            "out_dtype": out_dtype, "hashes": hashes}

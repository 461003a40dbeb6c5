"""Checks made before any tensor is merged: same architecture, same tensors (names and shapes), same
vocabulary. A difference is a :class:`MergeCheckError` saying which models differ and how.

Vocabularies are compared token by token (``token -> id`` of each model's tokenizer, added tokens
included): two tokenizers of the same size that number tokens differently would make the merge average
the embeddings of different tokens, the silent garbling mergekit's users report. A mismatch is refused
unless the config sets ``vocab_policy: by_id`` (merge rows by id anyway; shapes must still agree).
"""

from __future__ import annotations

import json
from pathlib import Path

from trainer.merge.shards import ModelWeights

__all__ = ["MergeCheckError", "check_architecture", "check_tensors", "check_vocabularies", "read_vocabulary"]


class MergeCheckError(ValueError):
    """The models cannot be merged as the config asks."""


def read_model_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MergeCheckError(f"{folder}: no config.json (not a transformers model folder)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise MergeCheckError(f"{path}: unreadable ({e})") from e


def check_architecture(configs: dict[Path, dict]) -> None:
    """Same ``architectures`` and ``model_type`` in every model's config.json."""
    (first, cfg), *rest = configs.items()
    for key in ("architectures", "model_type"):
        for path, other in rest:
            if other.get(key) != cfg.get(key):
                raise MergeCheckError(f"architectures differ: {first} has {key} {cfg.get(key)!r}, "
                                      f"{path} has {other.get(key)!r}")


def check_tensors(weights: dict[Path, ModelWeights]) -> None:
    """Same tensor names and shapes in every model."""
    (first, ref), *rest = weights.items()
    for path, other in rest:
        missing = sorted(set(ref.tensors) - set(other.tensors))
        extra = sorted(set(other.tensors) - set(ref.tensors))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing)} tensors of {first} are not in it (e.g. {missing[0]})")
            if extra:
                parts.append(f"it has {len(extra)} tensors {first} lacks (e.g. {extra[0]})")
            raise MergeCheckError(f"tensor names differ: {path}: " + "; ".join(parts))
        for name, info in ref.tensors.items():
            if other.tensors[name].shape != info.shape:
                raise MergeCheckError(f"tensor shapes differ: {name} is {list(info.shape)} in {first} and "
                                      f"{list(other.tensors[name].shape)} in {path}")


def read_vocabulary(folder: Path) -> dict[str, int] | None:
    """The tokenizer's ``token -> id`` (added tokens included), or None when the folder has no tokenizer."""
    from transformers import AutoTokenizer

    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json",
                                                "tokenizer_config.json")):
        return None
    try:
        return dict(AutoTokenizer.from_pretrained(folder).get_vocab())
    except Exception as e:  # a broken tokenizer: say which folder
        raise MergeCheckError(f"{folder}: its tokenizer does not load ({type(e).__name__}: {e})") from e


def describe_difference(a: dict[str, int], b: dict[str, int]) -> str:
    only_a = sorted(set(a) - set(b), key=a.get)
    only_b = sorted(set(b) - set(a), key=b.get)
    moved = sorted((t for t in set(a) & set(b) if a[t] != b[t]), key=a.get)
    parts = [f"{len(a)} vs {len(b)} tokens"]
    if only_a:
        parts.append(f"{len(only_a)} only in the first (e.g. {only_a[0]!r} id {a[only_a[0]]})")
    if only_b:
        parts.append(f"{len(only_b)} only in the second (e.g. {only_b[0]!r} id {b[only_b[0]]})")
    if moved:
        parts.append(f"{len(moved)} with different ids (e.g. {moved[0]!r}: {a[moved[0]]} vs {b[moved[0]]})")
    return ", ".join(parts)


def check_vocabularies(folders: list[Path], policy: str) -> dict[str, object]:
    """Compare every model's vocabulary with the first's. Returns what was found for the manifest
    (``{"policy", "same", "differences"}``); raises :class:`MergeCheckError` on a difference unless
    ``policy == "by_id"``. A model without a tokenizer cannot be compared: refused too unless by_id."""
    vocabularies = {f: read_vocabulary(f) for f in folders}
    first = folders[0]
    differences = []
    for folder in folders[1:]:
        a, b = vocabularies[first], vocabularies[folder]
        if a is None or b is None:
            missing = first if a is None else folder
            if a is None and b is None:
                continue  # neither has a tokenizer: nothing to compare, shapes were checked
            differences.append(f"{missing} has no tokenizer, so its vocabulary cannot be compared")
        elif a != b:
            differences.append(f"{first} and {folder}: " + describe_difference(a, b))
    if differences and policy != "by_id":
        raise MergeCheckError(
            "vocabularies differ: " + "; ".join(differences) + ". Merging would average the embeddings of "
            "different tokens. Merge models that share one tokenizer, or set `vocab_policy: by_id` in the config "
            "to merge embedding rows by token id anyway.")
    return {"policy": policy, "same": not differences, "differences": differences}

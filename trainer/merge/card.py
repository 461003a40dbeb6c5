"""The merged model's card (``huggingface_hub.ModelCard``): inputs with their hashes and licences, the
method and its parameters, the config as given."""

from __future__ import annotations

from pathlib import Path

from trainer.merge.config import MergeConfig

__all__ = ["merge_card", "merged_license"]


def merged_license(fingerprints: list[dict]) -> str:
    """The inputs' licence when they all share one, else ``other`` (the card lists each)."""
    licenses = {f["license"].lower() for f in fingerprints}
    return licenses.pop() if len(licenses) == 1 else "other"


def merge_card(config: MergeConfig, fingerprints: dict[Path, dict], method, out_dtype: str, name: str):
    """A :class:`huggingface_hub.ModelCard` for the merge of ``fingerprints`` (one per input) by ``config``."""
    from huggingface_hub import ModelCard, ModelCardData

    prints = list(fingerprints.values())
    license_ = merged_license(prints)
    data = ModelCardData(
        license=license_, library_name="transformers", tags=["merge", "sagecorpus", config.merge_method],
        base_model=[f["model_id"] for f in prints],
    )
    rows = []
    for path, fp in fingerprints.items():
        entry = config.entry(path)
        role = "base" if path == config.base_model else "model"
        params = ", ".join(f"{k}: {v}" for k, v in entry.parameters.items()) or "-"
        rows.append(f"| {fp['model_id']} | {role} | {params} | {fp['license']} | `{fp['sha256'][:16]}` |")
    shared = ", ".join(f"{k}: {v}" for k, v in config.parameters.items()) or "defaults"
    licence_note = "" if license_ != "other" else (
        "\nThe inputs are under different licences (listed above): the merged weights are bound by each of them.\n")
    text = f"""---
{data.to_yaml()}
---

# {name}

A merge of {len(prints)} models with **{method.title}** ([reference]({method.reference})), made by
sagecorpus (`sagecorpus merge`), tensor by tensor; computed in {config.dtype or "each tensor's own dtype"},
saved in {out_dtype}.

| model | role | parameters | licence | sha256 (weights) |
|---|---|---|---|---|
{chr(10).join(rows)}

Method parameters: {shared}. Vocabulary policy: `{config.vocab_policy}`.
{licence_note}
## Configuration

```yaml
{config.source.strip()}
```
"""
    return ModelCard(text)

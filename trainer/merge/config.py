"""The merge config: mergekit's YAML format, for the methods and keys we support.

A mergekit config such as::

    merge_method: ties
    base_model: ./general
    models:
      - model: ./specialist
        parameters: {weight: 0.7, density: 0.5}
      - model: ./general
    parameters: {normalize: true}
    dtype: float32
    out_dtype: bfloat16
    tokenizer_source: base

runs unchanged and gives the tensors mergekit gives. Parameter values may be mergekit's gradients
(a list, interpolated across the layers) and conditional lists (``[{filter: self_attn, value: 0.3},
{value: 0.5}]``, the first whose filter is a substring of the tensor's name wins). Anything we cannot
honour (``slices``, ``modules``, a ``tokenizer`` section, a remote model id, an unknown key or
parameter) is a :class:`MergeConfigError` naming the key, never ignored.

Two keys are ours, not mergekit's: ``vocab_policy`` (``error``, the default: models whose vocabularies
differ are refused; ``by_id``: merge embedding rows by token id anyway, knowing that they may mean
different tokens) and ``seed`` (the seed of DARE's random drops; default 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from corpus.run.stage import OUT

__all__ = ["DTYPE_NAMES", "MergeConfig", "MergeConfigError", "ModelEntry", "layer_position", "load_config",
           "model_references", "resolve"]

DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
TOP_KEYS = {"merge_method", "models", "base_model", "parameters", "dtype", "out_dtype", "tokenizer_source",
            "chat_template", "vocab_policy", "seed"}
UNSUPPORTED_KEYS = {
    "slices": "layer slices (frankenmerges) are not supported; list whole models under `models`",
    "modules": "per-module merges are not supported; list whole models under `models`",
    "tokenizer": "the `tokenizer` section (building a tokenizer and permuting embeddings) is not supported; "
                 "use `tokenizer_source` with models that share one vocabulary",
}
VOCAB_POLICIES = ("error", "by_id")


class MergeConfigError(ValueError):
    """A merge config we cannot run as written."""


@dataclass
class ModelEntry:
    """One input model: its folder and its own parameter settings (unresolved)."""

    path: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # as the config writes it


@dataclass
class MergeConfig:
    """A validated merge config (see the module doc). ``source``: the YAML text as given."""

    merge_method: str
    models: list[ModelEntry]
    base_model: Path | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None  # None, "base", "union", or a model path (as written)
    chat_template: str | None = None
    vocab_policy: str = "error"
    seed: int = 0
    source: str = ""
    origin: str = "<config>"

    @property
    def inputs(self) -> list[Path]:
        """Every model read, in order: the listed models, then the base model when it is not listed."""
        paths = [m.path for m in self.models]
        if self.base_model is not None and self.base_model not in paths:
            paths.append(self.base_model)
        return paths

    def entry(self, path: Path) -> ModelEntry:
        return next((m for m in self.models if m.path == path), ModelEntry(path, {}, str(path)))

    def as_dict(self) -> dict:
        """The config as recorded in the manifest (paths as absolute strings)."""
        return {"merge_method": self.merge_method,
                "models": [{"model": str(m.path), "parameters": m.parameters} for m in self.models],
                "base_model": str(self.base_model) if self.base_model else None, "parameters": self.parameters,
                "dtype": self.dtype, "out_dtype": self.out_dtype, "tokenizer_source": self.tokenizer_source,
                "chat_template": self.chat_template, "vocab_policy": self.vocab_policy, "seed": self.seed}


def _model_path(value: Any, where: str, origin: str, relative_to: Path | None) -> Path:
    if isinstance(value, dict):
        if set(value) == {"path"} or set(value) == {"model"} and isinstance(value["model"], dict):
            inner = value.get("path") or value["model"].get("path")
            extra = set(value.get("model", {})) - {"path"} if "model" in value else set()
            if extra or not isinstance(inner, str):
                raise MergeConfigError(f"{origin}: {where}: only a local model folder is supported "
                                       f"(got {value!r}; LoRA and revisions are not)")
            value = inner
        else:
            raise MergeConfigError(f"{origin}: {where}: only a local model folder is supported (got {value!r})")
    if not isinstance(value, str) or not value:
        raise MergeConfigError(f"{origin}: {where}: expected a model folder, got {value!r}")
    if "+" in value and not Path(value).exists():
        raise MergeConfigError(f"{origin}: {where}: {value!r}: model+LoRA references are not supported")
    path = Path(value).expanduser()
    if not path.is_absolute() and relative_to is not None and (relative_to / path).is_dir():
        path = relative_to / path  # relative to the config file, as every sagecorpus config; else to the cwd
    if not path.is_dir():
        raise MergeConfigError(f"{origin}: {where}: {value!r} is not a local model folder (models are never "
                               "downloaded: give a folder)")
    return path.resolve()


def load_config(config: str | Path | dict, *, origin: str | None = None, run_dir: str | Path | None = None) -> MergeConfig:
    """Read and check a mergekit-style config: a YAML file's path, or the mapping itself.

    A relative model path is taken from the config file's folder (as in every sagecorpus config), else
    from the working directory (where mergekit users run their configs from).
    ``run_dir``: what a model path's leading ``{out}`` stands for (a recipe step's run folder).
    Raises :class:`MergeConfigError` naming the file and the key for anything we cannot honour.
    """
    from trainer.merge.methods import METHODS

    relative_to = None
    if isinstance(config, dict):
        data, source = config, yaml.safe_dump(config, sort_keys=False)
        origin = origin or "<config>"
    else:
        path = Path(config)
        origin = origin or str(path)
        try:
            source = path.read_text()
            data = yaml.safe_load(source)
        except (OSError, yaml.YAMLError) as e:
            raise MergeConfigError(f"{origin}: unreadable merge config ({e})") from e
        relative_to = path.resolve().parent
    if not isinstance(data, dict):
        raise MergeConfigError(f"{origin}: a merge config is a mapping with merge_method and models")
    if run_dir is not None:
        data = _substitute_out(data, str(run_dir))
    for key in data:
        if key in UNSUPPORTED_KEYS:
            raise MergeConfigError(f"{origin}: `{key}`: {UNSUPPORTED_KEYS[key]}")
        if key not in TOP_KEYS:
            raise MergeConfigError(f"{origin}: unknown key `{key}` (supported: {', '.join(sorted(TOP_KEYS))})")
    method_name = data.get("merge_method")
    if method_name not in METHODS:
        raise MergeConfigError(f"{origin}: `merge_method`: {method_name!r} is not supported "
                               f"(supported: {', '.join(METHODS)})")
    method = METHODS[method_name]
    models_raw = data.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        raise MergeConfigError(f"{origin}: `models`: a list of models to merge is required")
    models = []
    for i, item in enumerate(models_raw):
        where = f"models[{i}]"
        if isinstance(item, str):
            item = {"model": item}
        if not isinstance(item, dict) or "model" not in item:
            raise MergeConfigError(f"{origin}: {where}: expected a mapping with `model`")
        extra = set(item) - {"model", "parameters"}
        if extra:
            raise MergeConfigError(f"{origin}: {where}: unknown key `{min(extra)}`")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise MergeConfigError(f"{origin}: {where}.parameters: expected a mapping")
        for name in params:
            if name not in method.input_parameters:
                raise MergeConfigError(
                    f"{origin}: {where}.parameters.{name}: not a per-model parameter of {method_name} "
                    f"(per-model: {', '.join(method.input_parameters) or 'none'})")
        path = _model_path(item["model"], f"{where}.model", origin, relative_to)
        if any(m.path == path for m in models):
            raise MergeConfigError(f"{origin}: {where}: {item['model']!r} is listed twice")
        models.append(ModelEntry(path, params, str(item["model"])))
    base = data.get("base_model")
    base_path = _model_path(base, "base_model", origin, relative_to) if base is not None else None
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise MergeConfigError(f"{origin}: `parameters`: expected a mapping")
    known = set(method.shared_parameters) | set(method.input_parameters)
    for name in parameters:
        if name not in known:
            raise MergeConfigError(f"{origin}: parameters.{name}: not a parameter of {method_name} "
                                   f"(its parameters: {', '.join(sorted(known))})")
    for key in ("dtype", "out_dtype"):
        value = data.get(key)
        if value is not None and str(value).removeprefix("torch.") not in DTYPE_NAMES:
            raise MergeConfigError(f"{origin}: `{key}`: {value!r} is not one of {', '.join(DTYPE_NAMES)}")
    tokenizer_source = data.get("tokenizer_source")
    if tokenizer_source is not None and tokenizer_source not in ("base", "union"):
        tokenizer_source = str(_model_path(tokenizer_source, "tokenizer_source", origin, relative_to))
    if tokenizer_source == "base" and base_path is None:
        raise MergeConfigError(f"{origin}: `tokenizer_source: base` needs a `base_model`")
    chat_template = data.get("chat_template")
    if chat_template is not None and (not isinstance(chat_template, str) or
                                      (chat_template != "auto" and "{" not in chat_template)):
        raise MergeConfigError(f"{origin}: `chat_template`: {chat_template!r}: give a Jinja template or `auto` "
                               "(mergekit's built-in template names are not shipped here)")
    vocab_policy = data.get("vocab_policy", "error")
    if vocab_policy not in VOCAB_POLICIES:
        raise MergeConfigError(f"{origin}: `vocab_policy`: {vocab_policy!r} is not one of {', '.join(VOCAB_POLICIES)}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise MergeConfigError(f"{origin}: `seed`: expected an integer, got {seed!r}")
    config = MergeConfig(
        merge_method=method_name, models=models, base_model=base_path, parameters=parameters,
        dtype=str(data["dtype"]).removeprefix("torch.") if data.get("dtype") else None,
        out_dtype=str(data["out_dtype"]).removeprefix("torch.") if data.get("out_dtype") else None,
        tokenizer_source=tokenizer_source, chat_template=chat_template, vocab_policy=vocab_policy, seed=seed,
        source=source, origin=origin,
    )
    method.check_config(config)
    if config.base_model is not None and config.base_model not in [m.path for m in models] \
            and method.base_takes_input_parameters:
        raise MergeConfigError(f"{origin}: `base_model`: {method_name} has no base model; list it under `models` "
                               "with its weight instead")
    # every required parameter must resolve for every model (tensor names can only narrow a filter)
    for path in config.inputs:
        for name, (_, default) in method.input_parameters.items():
            if path == config.base_model and not method.base_takes_input_parameters:
                continue
            if default is REQUIRED and not _has_setting(config.entry(path).parameters, name) \
                    and not _has_setting(parameters, name):
                raise MergeConfigError(f"{origin}: model {config.entry(path).name}: parameter `{name}` is required "
                                       f"by {method_name}")
    for name, (_, default) in method.shared_parameters.items():
        if default is REQUIRED and not _has_setting(parameters, name):
            raise MergeConfigError(f"{origin}: parameters.{name} is required by {method_name}")
    return config


def model_references(data: dict) -> list[str]:
    """Every model folder a raw config names (models, base_model, a tokenizer_source folder), as written."""
    refs = []
    for item in data.get("models") or []:
        value = item.get("model") if isinstance(item, dict) else item
        if isinstance(value, str):
            refs.append(value)
    for key in ("base_model", "tokenizer_source"):
        value = data.get(key)
        if isinstance(value, str) and value not in ("base", "union"):
            refs.append(value)
    return refs


def _substitute_out(data: dict, run_dir: str) -> dict:
    def sub(value):
        return run_dir + value[len(OUT):] if isinstance(value, str) and value.startswith(OUT) else value

    data = dict(data)
    data["models"] = [({**item, "model": sub(item.get("model"))} if isinstance(item, dict) else sub(item))
                      for item in data.get("models") or []] or data.get("models")
    for key in ("base_model", "tokenizer_source"):
        if key in data:
            data[key] = sub(data[key])
    return data



class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()
"""The default of a parameter that has none: the config must give it."""


def _has_setting(parameters: dict, name: str) -> bool:
    return name in parameters and parameters[name] is not None


# ------------------------------------------------------------------------- per-tensor parameter values

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


def layer_position(tensor_name: str, num_layers: int) -> float:
    """mergekit's ``t`` for gradients: layer i of n is at i / (n - 1) (1 when n is 1); tensors outside the
    layers (embeddings, final norm, head) are at 0."""
    m = _LAYER.search(tensor_name)
    if not m:
        return 0.0
    return int(m.group(1)) / (num_layers - 1) if num_layers > 1 else 1.0


def _validate(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise MergeConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is float:
        if isinstance(value, bool):
            raise MergeConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise MergeConfigError(f"{where}: expected a number, got {value!r}") from None
    return value


def _evaluate(setting: Any, tensor_name: str, t: float, kind: type, where: str) -> Any:
    """One setting's value for a tensor: a scalar, a gradient (list of scalars), or conditional entries."""
    if isinstance(setting, dict):
        setting = [setting]
    if isinstance(setting, (bool, int, float, str)):
        return _validate(setting, kind, where)
    if isinstance(setting, list):
        if not setting:
            return None
        if all(isinstance(e, (bool, int, float, str)) for e in setting):
            values = [_validate(e, kind, where) for e in setting]
            if kind is not float:
                return values[int(t * (len(values) - 1))]
            scaled = t * (len(setting) - 1)
            i0 = int(scaled)
            i1 = min(len(setting) - 1, i0 + 1)
            frac = scaled - i0
            return _validate((1 - frac) * values[i0] + frac * values[i1], kind, where)
        for cond in setting:
            if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"value", "filter"}:
                raise MergeConfigError(f"{where}: expected a value, a list of values or a list of "
                                       f"{{filter, value}} entries, got {cond!r}")
            flt = cond.get("filter")
            if flt is None or flt == "*" or (tensor_name and flt in tensor_name):
                return _evaluate(cond["value"], tensor_name, t, kind, where)
        return None
    raise MergeConfigError(f"{where}: unexpected value {setting!r}")


def resolve(name: str, kind: type, default: Any, settings: list[tuple[str, dict]], tensor_name: str, t: float) -> Any:
    """A parameter's value for one tensor: the first of ``settings`` (highest precedence first, each
    ``(where, mapping)``) that gives one, else ``default`` (an error if it is :data:`REQUIRED`)."""
    for where, scope in settings:
        if scope and name in scope:
            value = _evaluate(scope[name], tensor_name, t, kind, f"{where}.{name}")
            if value is not None:
                return value
    if default is REQUIRED:
        raise MergeConfigError(f"parameter `{name}` has no value for tensor {tensor_name} (no filter matched it)")
    return default

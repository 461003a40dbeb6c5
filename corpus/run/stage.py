"""What a stage is: a typed config, the files it reads, the tables it writes, and per-shard work.

A stage never knows where it runs. The executor (``corpus.run.executor``) splits the stage's work
items into a fixed number of shards, runs :meth:`Stage.process` on each shard wherever it was told
to (in process, a local pool, Ray, Slurm), and merges the shards in order, so the output bytes
depend on the inputs and config only.

Paths in a stage config may start with ``{out}``: the run's output folder. That is how a stage reads
what an earlier stage of the same run wrote, and how ``rebuild`` replays a run into another folder.
"""

from __future__ import annotations

import json
from collections import Counter
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from corpus.files import is_url, local_path
from corpus.run.secrets import redact
from schemas import DECISION, Table

OUT = "{out}"


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are an error, every field has a description."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def folder_in_run(value: str) -> str | None:
    """The run-folder folder that a ``{out}/...`` path names, as a step reads it (``"{out}/models/sft"`` ->
    ``"models/sft/"``: read by the digest of its files); None for a path outside the run folder."""
    return value[len(OUT) + 1:].rstrip("/") + "/" if value.startswith(OUT + "/") else None


def path_field(default: Any = ..., description: str = "") -> Any:
    """A config field holding a path or URL; relative local paths are made absolute in recipes."""
    return Field(default, description=description, json_schema_extra={"path": True})


def name_or_path_field(default: Any = ..., description: str = "") -> Any:
    """A config field holding a name (a model id on a server) or a local folder (a model's weights):
    in recipes and on the command line a relative value is made absolute only when that local path
    exists; it is not an input file by itself (a stage that reads it says so in ``input_files``)."""
    return Field(default, description=description, json_schema_extra={"name_or_path": True})


def how_field(default: Any = ..., description: str = "", **kwargs: Any) -> Any:
    """A config field that changes only *how* the work runs (concurrency, batch size, device, endpoints,
    credentials, timeouts), never what is written: it is left out of the step's identity, so changing
    it neither redoes finished work nor changes the config hash; it is still recorded (minus secrets)."""
    extra = {"how": True, **kwargs.pop("json_schema_extra", {})}
    return Field(default, description=description, json_schema_extra=extra, **kwargs)


def _field_extra(model: type[BaseModel], name: str) -> dict:
    field = model.model_fields.get(name)  # None: an extra key of a config that allows them (a trainer's TRL keys)
    extra = field.json_schema_extra if field is not None else None
    return extra if isinstance(extra, dict) else {}


def is_path_field(model: type[BaseModel], name: str) -> bool:
    return bool(_field_extra(model, name).get("path"))


def is_how_field(model: type[BaseModel], name: str) -> bool:
    return bool(_field_extra(model, name).get("how"))


def absolutize(config: StageConfig, base: Path | None = None) -> StageConfig:
    """Make relative local paths absolute against ``base`` (default: the current folder).

    ``{out}`` paths and URLs are left alone; ``file://`` paths become plain paths. A
    :func:`name_or_path_field` is made absolute only when its value exists as a local path.
    """
    base = base or Path.cwd()
    updates = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if _field_extra(type(config), name).get("name_or_path") and isinstance(value, str) and not is_url(value):
            local = base / Path(local_path(value)).expanduser()
            if local.exists():
                updates[name] = str(local.resolve())
            continue
        if not is_path_field(type(config), name):
            continue
        values = value if isinstance(value, list) else [value]
        fixed = [
            v if (v is None or v.startswith(OUT) or is_url(v)) else str((base / Path(local_path(v)).expanduser()).resolve())
            for v in values
        ]
        updates[name] = fixed if isinstance(value, list) else fixed[0]
    return config.model_copy(update=updates)


class Stage(ABC):
    """One step of the flow. Subclasses set ``name``, ``config_class`` and implement the hooks."""

    name: ClassVar[str]
    config_class: ClassVar[type[StageConfig]]
    description: ClassVar[str] = ""
    verb: ClassVar[str | None] = None  # CLI words, e.g. "curate clean" (default: the name)
    recipe_only: ClassVar[bool] = False  # no generated CLI verb: its command has a form of its own (`sagecorpus merge CONFIG OUT`)
    gpus_per_task: int = 0  # GPUs each task of this stage gets (a class default; a stage may set it per instance)

    def __init__(self, config: StageConfig | dict | None = None):
        if config is None:
            config = self.config_class()
        elif isinstance(config, dict):
            config = self.config_class(**config)
        self.config = config
        self.out_dir: Path | None = None
        self.work_dir: Path | None = None  # this step's private folder, set by the executor
        self.replay_dir: Path | None = None  # rebuild: the original run's folder, whose stored model outputs replay
        self.earlier: list[Stage] = []  # the steps before this one in its run, in order (set by run_recipe): for steps that describe the run (report, card)
        self.quiet = False  # no progress bars (set by the executor from --quiet)
        self.stats: Counter = Counter()  # this shard's counters (see stat_update)
        self.check_requirements()

    # -- paths ---------------------------------------------------------------------------------
    def bind(self, out_dir: str | Path) -> Stage:
        """Set the run's output folder (resolves ``{out}`` in config paths)."""
        self.out_dir = Path(out_dir)
        return self

    def path(self, value: str) -> str:
        if value.startswith(OUT):
            if self.out_dir is None:
                raise RuntimeError(f"stage {self.name}: {value!r} needs the run's output folder (bind first)")
            return str(self.out_dir) + value[len(OUT):]
        return value

    # -- what the stage declares ---------------------------------------------------------------
    def outputs(self) -> dict[str, Table | None]:
        """Files this stage writes, relative to the output folder, and their tables (None: not a table).

        A key ending in ``/`` (table None) is a folder the stage writes whole, such as a model: every
        file in it is hashed when the step finishes and checked when it is reused, and the folder is
        removed when the step is redone. Every stage writes ``decisions/<name>.parquet``: what it did
        with each item and why.
        """
        return {self.decisions_file: DECISION}

    @property
    def decisions_file(self) -> str:
        """This stage's decision table, relative to the output folder."""
        return f"decisions/{self.name}.parquet"

    def shard_outputs(self) -> dict[str, Table]:
        """The outputs written by the shards (and merged); the rest :meth:`finish` writes itself."""
        return {o: t for o, t in self.outputs().items() if t is not None}

    def input_files(self) -> list[str]:
        """External files and folders (outside the output folder) this stage reads.

        Folders are listed file by file; every file's sha256 is part of the step's identity and the
        manifest. The default: every path field whose value is not in the run folder.
        """
        return [v for v in self._path_values() if not v.startswith(OUT)]

    def reads(self) -> list[str]:
        """Run-folder files (relative to it) this stage reads, written by earlier steps.

        Their sha256 is part of the step's identity, so a step is redone when what it reads changed;
        a folder output of an earlier step (``models/cpt/``) counts by the digest of its files.
        The default: every path field whose value is a ``{out}/...`` Parquet file.
        """
        return [v[len(OUT) + 1:] for v in self._path_values() if v.startswith(OUT + "/") and v.endswith(".parquet")]

    def _path_values(self) -> list[str]:
        values = []
        for name in type(self.config).model_fields:
            if is_path_field(type(self.config), name):
                value = getattr(self.config, name)
                values += [v for v in (value if isinstance(value, list) else [value]) if v]
        return values

    def requirements(self) -> dict[str, str]:
        """Optional packages this stage needs with its config: import name -> the sagecorpus extra."""
        return {}

    def check_requirements(self) -> None:
        """Fail at construction, naming the ``pip install`` that fixes it, if an optional package is missing."""
        import importlib.util

        missing = {m: extra for m, extra in self.requirements().items() if importlib.util.find_spec(m) is None}
        if missing:
            extras = ",".join(sorted(set(missing.values())))
            raise ImportError(f"stage {self.name} needs {', '.join(sorted(missing))}: pip install 'sagecorpus[{extras}]'")

    def models(self) -> list[dict]:
        """Models this stage calls (id, weights hash, sampling parameters, licence) for the manifest."""
        return []

    # -- the work ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check what needs no earlier step's output (input files such as benchmark questions, models):
        called for every step of a run before any step runs, so a bad file fails at once, not hours in."""

    def prepare(self) -> dict[str, int] | None:
        """Runs once before any shard (in the driving process; on Slurm, as its own job).

        For work that needs the whole input at once, such as joining metadata with file listings;
        it may write what :meth:`plan` then reads into ``self.work_dir``, and return counters for
        the run's stats.
        """

    def begin(self) -> None:
        """Runs in the driving process each time the step is started or resumed (after :meth:`prepare`,
        never when its finished outputs are reused): for what belongs to this invocation, not to the
        step, such as a cost estimate shown before any model is called or this invocation's request
        budget (written into ``self.work_dir`` for the shards to read)."""

    def task_count(self, tasks: int) -> int:
        """Shards this step's work is split into: the executor's ``tasks`` (a :class:`OneTaskStage`: one)."""
        return tasks

    @abstractmethod
    def plan(self) -> list[Any]:
        """The work items, in a deterministic order. Called in every task, so keep it cheap."""

    @abstractmethod
    def process(self, items: list[Any]) -> Iterator[tuple[str, list[dict]]]:
        """Do the work for one shard of items, yielding ``(output file, rows)`` in item order.

        Counters go through :meth:`stat_update`.
        """

    def finish(self, stats: dict[str, float]) -> dict[str, float] | None:
        """Called once after all shards are merged: whole-corpus work (clustering), checks on the
        whole output (e.g. nothing kept) and the outputs the shards do not write. May return more
        counters for the run's stats."""

    def summary(self, stats: dict) -> str:
        """One line saying what the step did, from its counters (what ``sagecorpus run`` prints at the end):
        items, then decisions by action with the reasons of those not kept. Stages add what matters."""
        items = int(stats.get("items", 0))
        actions = [f"{k.split('.', 1)[1]} {int(n)}" for k, n in sorted(stats.items()) if k.startswith("decisions.")]
        reasons = [f"{k.split('.', 1)[1].split(':')[-1]} {int(n)}" for k, n in sorted(stats.items())
                   if k.startswith("reason.") and not k.startswith("reason.kept")]
        line = f"{items} items"
        if actions:
            line += ": " + ", ".join(actions)
        if reasons:
            line += f" ({', '.join(reasons)})"
        return line

    # -- helpers -------------------------------------------------------------------------------
    def replay_folder(self, relative: str) -> bool:
        """In a ``rebuild``, copy the original run's folder output ``relative`` (a trained model) into
        this run instead of making it again, and return True; return False when this is not a rebuild.

        For outputs that cannot be made again byte for byte (training on GPUs): the original run must
        hold this step with the same identity (same config, same bytes read) and every file of the
        folder with the sha256 its manifest recorded, else :class:`corpus.run.item_store.ReplayMiss`.
        """
        if self.replay_dir is None:
            return False
        from corpus.run.workdir import replay_folder

        replay_folder(self, relative)
        return True

    def store(self, replay_only: bool = False):
        """This stage's durable per-item store (``{out}/_store/<name>``; see :mod:`corpus.run.item_store`)."""
        from corpus.run.item_store import open_store

        return open_store(self, replay_only)

    def stat_update(self, *names: str, value: int | float = 1) -> None:
        """Add ``value`` to each named counter of this shard (summed over shards into the run's stats)."""
        for name in names:
            self.stats[name] += value

    def decision(
        self, item_id: str, action: str, reason: str, score: float | None = None,
        cluster_id: str | None = None, kept_id: str | None = None, **detail: Any,
    ) -> dict:
        """A ``Decision`` row from this stage."""
        return {
            "stage": self.name, "item_id": item_id, "action": action, "reason": reason, "score": score,
            "cluster_id": cluster_id, "kept_id": kept_id,
            "detail": json.dumps(detail, sort_keys=True, ensure_ascii=False, default=str),
        }

    def config_dict(self) -> dict:
        return self.config.model_dump(mode="json")

    def what_config(self) -> dict:
        """The config fields that change results (the step's identity): every field but the ``how`` ones."""
        cls = type(self.config)
        return {k: v for k, v in self.config_dict().items() if not is_how_field(cls, k)}

    def __repr__(self) -> str:  # what logs and datatrove's executor.json show: never a secret
        return f"{type(self).__name__}({json.dumps(redact(self.config_dict()), sort_keys=True)})"


class OneTaskStage(Stage):
    """A step done as one piece of work (train a model, merge models, write a card or a report): one
    work item, run by one task (with :attr:`gpus_per_task` GPUs) whatever the executor's ``tasks``.
    Subclasses implement :meth:`run_task`."""

    def task_count(self, tasks: int) -> int:
        return 1

    def plan(self) -> list[Any]:
        return [self.name]

    def process(self, items: list[Any]) -> Iterator[tuple[str, list[dict]]]:
        if items:
            yield from self.run_task()

    @abstractmethod
    def run_task(self) -> Iterator[tuple[str, list[dict]]]:
        """Do the whole step (write its folder or file outputs) and yield ``(output file, rows)`` like
        :meth:`process`: at least its decision row."""


_PER_PROCESS: dict[str, Any] = {}


def per_process(key: str, factory: Callable[[], Any]) -> Any:
    """An object built once per worker process (a model) and reused by every shard that process runs."""
    if key not in _PER_PROCESS:
        _PER_PROCESS[key] = factory()
    return _PER_PROCESS[key]


class EmptyOutputError(RuntimeError):
    """A step would write (or read) a table with no rows: almost always a misconfiguration, never silent."""


STAGES: dict[str, type[Stage]] = {}
ENTRY_POINT_GROUP = "sagecorpus.stages"
VERB_GROUPS: dict[str, str] = {}  # CLI group words (e.g. "curate") -> help


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage available to recipes, ``rebuild`` and the CLI by its name.

    Any package can register stages: a module that defines them is named in the package's
    ``sagecorpus.stages`` entry-point group (pyproject ``[project.entry-points."sagecorpus.stages"]``),
    and :func:`get_stage` imports every such module, so ``corpus`` never imports the others.
    """
    if cls.name in STAGES and STAGES[cls.name] is not cls and STAGES[cls.name].__qualname__ != cls.__qualname__:
        raise ValueError(f"stage name {cls.name!r} is taken by {STAGES[cls.name].__module__}.{STAGES[cls.name].__qualname__}")
    STAGES[cls.name] = cls
    return cls


def register_verb_group(words: str, help_text: str) -> None:
    """Help for a CLI group of stage verbs (``"curate"``, ``"curate filter"``, ``"qa"``)."""
    VERB_GROUPS[words] = help_text


def get_stage(name: str) -> type[Stage]:
    load_stages()
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {sorted(STAGES)}") from None


def all_stages() -> dict[str, type[Stage]]:
    load_stages()
    return dict(STAGES)


_loaded = False


def load_stages() -> None:
    """Import the built-in stages and every module of the ``sagecorpus.stages`` entry-point group."""
    global _loaded
    if _loaded:
        return
    import importlib
    from importlib.metadata import entry_points

    import corpus.stages  # noqa: F401  (the built-in stages, also when the package is not installed)

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            importlib.import_module(ep.value.split(":")[0])
        except ImportError as e:
            raise ImportError(f"stages of entry point {ep.name!r} ({ep.value}) cannot be imported: {e}") from e
    _loaded = True


def writers_of(relative: str) -> list[str]:
    """Names of the registered stages whose default config writes ``relative`` in the run folder."""
    names = []
    for name, cls in sorted(all_stages().items()):
        try:
            if relative in cls(cls.config_class.model_construct()).outputs():  # defaults; required fields unset
                names.append(name)
        except Exception:  # a stage whose default config cannot be built writes nothing by default
            continue
    return names

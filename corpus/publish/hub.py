"""Publish a dataset (a run folder with its card) or a model folder (with its card) to the Hugging Face Hub.

:func:`plan_upload` decides exactly which files go where: for a run folder, its card (``README.md``,
written by ``sagecorpus card``), ``manifest.json``, ``report.html`` when there is one, and the Parquet
files of the card's ``configs``; for a model folder (``config.json`` and weights), every file but
hidden ones, work folders (``_*``) and training checkpoints (``checkpoint-*``), its ``README.md``
model card required. A run folder's files must have the bytes its manifest recorded. :func:`publish` refuses a dataset holding papers under licences not allowed
(:data:`corpus.publish.licenses.REDISTRIBUTABLE` unless told), then calls ``HfApi.create_repo`` and
``HfApi.upload_folder`` with exactly those files.

The token is never passed, printed or written here: ``huggingface_hub`` reads it from ``HF_TOKEN`` or
its login cache (``hf auth login``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from corpus.publish.card import CARD_NAME, license_counts, published_files
from corpus.publish.licenses import REDISTRIBUTABLE, check_ids

HUB = "https://huggingface.co"
EXTRA_DATASET_FILES = ("manifest.json", "report.html")


class PublishError(ValueError):
    """A folder that cannot be published as asked (no card, nothing to upload, no token...)."""


class LicenseRefused(PublishError):
    """The dataset holds papers under licences the user did not allow."""


@dataclass
class UploadPlan:
    """What :func:`publish` uploads: ``files`` (relative to ``folder``) to ``repo_id``."""

    folder: Path
    repo_id: str
    repo_type: str  # "dataset" or "model"
    files: list[str]
    private: bool = False
    licenses: dict[str, int] = field(default_factory=dict)  # licence id -> papers in the uploaded tables

    @property
    def url(self) -> str:
        return f"{HUB}/{'datasets/' if self.repo_type == 'dataset' else ''}{self.repo_id}"

    def describe(self) -> str:
        """The plan, one line per file: what ``--dry-run`` prints."""
        sizes = {f: (self.folder / f).stat().st_size for f in self.files}
        lines = [(f"{self.repo_type} {self.folder} -> {self.url} ({'private' if self.private else 'public'}): "
                  f"{len(self.files)} files, {sum(sizes.values()):,} bytes")]
        lines += [f"  {f}\t{sizes[f]:,} bytes" for f in self.files]
        if self.licenses:
            lines.append("  papers per licence: " + ", ".join(f"{lid} {n}" for lid, n in self.licenses.items()))
        return "\n".join(lines)


def is_model_folder(folder: Path) -> bool:
    """A model folder: ``config.json`` (or a PEFT ``adapter_config.json``) beside weight files."""
    has_config = (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()
    return has_config and (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")))


def model_files(folder: Path) -> list[str]:
    """Every file of a model folder but hidden ones, ``_*`` work folders and ``checkpoint-*`` folders."""
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith((".", "_", "checkpoint-")) for part in rel.parts):
            files.append(rel.as_posix())
    return files


def dataset_files(folder: Path) -> list[str]:
    """The card, the manifest, the report and the data files of the card's configs."""
    if not (folder / CARD_NAME).is_file():
        raise PublishError(f"{folder}: no dataset card ({CARD_NAME}); write it first: sagecorpus card {folder}")
    try:
        data = published_files(folder)
    except (ValueError, KeyError, TypeError) as e:
        raise PublishError(f"{folder / CARD_NAME}: unreadable dataset card: {e}") from e
    if not data:
        raise PublishError(f"{folder / CARD_NAME}: its configs name no file of {folder}; rewrite it: sagecorpus card {folder}")
    return sorted({CARD_NAME, *data, *(f for f in EXTRA_DATASET_FILES if (folder / f).is_file())})


def check_against_manifest(folder: Path, files: list[str]) -> None:
    """Refuse files whose bytes differ from what the run's ``manifest.json`` recorded (a table changed
    or rewritten since the run: the manifest uploaded beside it would not describe it)."""
    from corpus.run.manifest import Manifest
    from schemas import sha256_file

    path = folder / "manifest.json"
    if not path.is_file():
        return
    recorded = {e.path: e.sha256 for e in Manifest.load(path).outputs}
    changed = [f for f in files if f in recorded and sha256_file(folder / f) != recorded[f]]
    if changed:
        raise PublishError(f"{folder}: {', '.join(changed)} changed since the run wrote it (sha256 differs from "
                           f"{path}); rerun the run (or `sagecorpus verify {path}` to see what differs)")


def plan_upload(folder: str | Path, repo_id: str, private: bool = False) -> UploadPlan:
    """Exactly what :func:`publish` would upload, and where."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise PublishError(f"{repo_id!r} is not a Hub repo id: use OWNER/NAME")
    if is_model_folder(folder):
        if not (folder / CARD_NAME).is_file():
            raise PublishError(f"{folder}: a model folder without its model card ({CARD_NAME}): a model is published "
                               "with the card that says what it is, its base model, data and licence (the merge step "
                               "writes one); add one (huggingface_hub.ModelCard) and publish again")
        return UploadPlan(folder, repo_id, "model", model_files(folder), private)
    files = dataset_files(folder)
    check_against_manifest(folder, files)
    licenses = {lid: n for lid, (_, n) in license_counts(folder, files).items() if n}
    return UploadPlan(folder, repo_id, "dataset", files, private, licenses)


def refused_licenses(plan: UploadPlan, allowed: list[str] | None = None) -> dict[str, int]:
    """The licences of the plan's papers that are not allowed (default: the redistributable ones)."""
    allowed_set = set(check_ids(allowed) if allowed else REDISTRIBUTABLE)
    return {lid: n for lid, n in plan.licenses.items() if lid not in allowed_set}


def _exact(path: str) -> str:
    """An ``fnmatch`` pattern matching exactly ``path`` (``upload_folder``'s ``allow_patterns``)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def publish(
    folder: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False,
    licenses: list[str] | None = None, force: bool = False, api=None,
) -> UploadPlan:
    """Upload a run folder (dataset) or a model folder to ``repo_id``; return the plan.

    Refuses (:class:`LicenseRefused`) a dataset holding papers under licences not in ``licenses``
    (default: the redistributable ones) unless ``force``. ``dry_run``: plan and check only, nothing
    is sent. ``api``: an ``HfApi`` (default: one that reads the token from ``HF_TOKEN`` or the login cache).
    """
    plan = plan_upload(folder, repo_id, private)
    refused = refused_licenses(plan, licenses)
    if refused and not force:
        allowed = ", ".join(check_ids(licenses) if licenses else REDISTRIBUTABLE)
        raise LicenseRefused(
            f"{plan.folder}: refused: the dataset holds papers under licences not allowed ("
            + ", ".join(f"{lid}: {n} paper(s)" for lid, n in refused.items())
            + f"; allowed: {allowed}). Rebuild it with the ingest step's licenses filter, allow them with "
            "--licenses if their terms let you redistribute, or --force")
    if dry_run:
        return plan
    if api is None:
        from huggingface_hub import HfApi, get_token

        if get_token() is None:
            raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (the token is never written by sagecorpus)")
        api = HfApi()
    api.create_repo(repo_id, repo_type=plan.repo_type, private=private or None, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(plan.folder), repo_type=plan.repo_type,
        allow_patterns=[_exact(f) for f in plan.files],
        commit_message=f"sagecorpus publish: {len(plan.files)} files",
    )
    return plan


__all__ = ["LicenseRefused", "PublishError", "UploadPlan", "plan_upload", "publish", "refused_licenses"]

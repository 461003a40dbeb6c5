"""What identifies a local model folder: its id, licence and the sha256 of its weight files.

Shared by every stage that runs a model from a local folder (Nougat OCR in ``corpus.extract``, the
in-process ``transformers`` backend of ``qa_synth``): the fingerprint goes into the run manifest and
the dataset cards, and its ``sha256`` into the keys of stored model outputs, so changed weights never
reuse an old output.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from schemas import sha256_file

__all__ = ["KNOWN_LICENSES", "ModelFolderError", "model_fingerprint"]

KNOWN_LICENSES: dict[str, str] = {
    "facebook/nougat": "CC-BY-NC-4.0",  # the official facebook/nougat-* checkpoints
}
"""Licence of well-known weights by model-id prefix, used when the folder has no model card saying it."""


class ModelFolderError(RuntimeError):
    """A model folder is missing, incomplete or unloadable."""


_HASHED: dict[tuple[str, int, int, int], str] = {}
"""sha256 of weight files this process already read, by (path, inode, size, modification time): a run
fingerprints the same multi-GB weights for several steps' manifests, cards and reports; a file written
again (new size or time) is read again."""


def _weights_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


def model_fingerprint(model_dir: str | Path, model_id: str | None = None,
                      file_hashes: dict[str, str] | None = None) -> dict[str, Any]:
    """Model id, licence and sha256 of the weight files, for the run manifest and dataset cards.

    ``sha256`` hashes the per-file hashes of all ``*.safetensors`` (else ``*.bin``) files in name
    order, so the same weights give the same fingerprint wherever they are stored. The id is
    ``model_id`` if given, else ``org/name`` from a Hub-cache path (``models--org--name``), else the
    config's ``_name_or_path``, else the folder name. The licence is read from the model card's
    front matter (``license:``), else from :data:`KNOWN_LICENSES` by id prefix, else ``"unknown"``.
    ``file_hashes``: ``{file name: sha256}`` already computed by a caller that read the weight files
    whole (the merge hashes them as it streams them); used when it names exactly the files found.
    Raises :class:`ModelFolderError` when the folder or its weight files are missing.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: model folder not found")
    files = sorted(folder.glob("*.safetensors")) or sorted(f for f in folder.glob("*.bin") if f.name != "training_args.bin")
    if not files:
        raise ModelFolderError(f"{folder}: no *.safetensors or *.bin weight files")
    if file_hashes is not None and sorted(file_hashes) == [f.name for f in files]:
        per_file = {f.name: file_hashes[f.name] for f in files}
    else:
        per_file = {f.name: _weights_sha256(f) for f in files}
    combined = hashlib.sha256("".join(f"{n}:{d}\n" for n, d in per_file.items()).encode()).hexdigest()

    if model_id is None:
        m = re.search(r"models--([^/\\]+)--([^/\\]+)", str(folder.resolve()))
        if m:
            model_id = f"{m.group(1)}/{m.group(2)}"
    if model_id is None and (folder / "config.json").is_file():
        name = json.loads((folder / "config.json").read_text()).get("_name_or_path") or ""
        if name and not Path(name).is_absolute() and "/" in name:
            model_id = name
    model_id = model_id or folder.name

    license_ = None
    card = folder / "README.md"
    if card.is_file():
        m = re.search(r"^---\s*\n(.*?)\n---", card.read_text(errors="replace"), re.DOTALL)
        if m:
            lm = re.search(r"^license:\s*(\S+)", m.group(1), re.MULTILINE)
            if lm:
                license_ = lm.group(1).strip("'\"")
    if license_ is None:
        license_ = next((lic for prefix, lic in KNOWN_LICENSES.items() if model_id.startswith(prefix)), "unknown")
    return {"model_id": model_id, "license": license_, "sha256": combined, "files": per_file}

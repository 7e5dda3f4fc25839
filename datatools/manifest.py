"""The data folder's ``manifest.json``, in the official export's shape, and the datasets built into it.

A manifest lists ``datasets`` (name, tokenizer name, path, vocabulary size, shard and token counts under
``stats``) and ``tokenizers`` (name, model and vocab paths). ``fetch`` adds the published entries of
each dataset it mirrors (and of its tokenizer), ``prepare`` an entry per build, which it checks a build
against before using it; both keep every other entry, so one folder can hold data from several sources.
A build's entries carry ``"built_by": "autogolf prepare build"``: a rebuild replaces only those, never
fetched data that happens to share a name or a path (see :func:`check_build_target`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autogolf.errors import DataError
from datatools.shards import read_header, shard_paths

MANIFEST_NAME = "manifest.json"
BUILT_BY = "autogolf prepare build"


@dataclass(frozen=True)
class BuiltDataset:
    """A built dataset: shards in ``dataset_dir``, its tokenizer, and what the shards hold."""

    dataset_dir: Path
    tokenizer_path: Path
    train_tokens: int
    val_tokens: int
    val_docs: int
    train_docs: int
    vocab_size: int
    train_shards: int
    val_shards: int


def read_manifest(path: Path, fix: str) -> dict:
    """The manifest at ``path`` as a dict; DataError naming the file and ``fix`` when it is unreadable,
    not JSON, or not a JSON object."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); {fix}") from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: manifest must be a JSON object; {fix}")
    return manifest


def dataset_entries(manifest: dict, dataset_name: str) -> tuple[dict | None, dict | None]:
    """The manifest's entry for dataset ``dataset_name`` and the entry of its tokenizer (None if absent)."""
    entry = next(
        (d for d in manifest.get("datasets", []) if isinstance(d, dict) and d.get("name") == dataset_name),
        None,
    )
    tokenizer = next(
        (
            t
            for t in manifest.get("tokenizers", [])
            if entry is not None and isinstance(t, dict) and t.get("name") == entry.get("tokenizer_name")
        ),
        None,
    )
    return entry, tokenizer


def record_build(
    root: Path,
    *,
    dataset_name: str,
    tokenizer_name: str,
    vocab_size: int,
    bos_id: int,
    stats: dict[str, int],
) -> None:
    """Add (or replace) a built dataset and its tokenizer in ``root/manifest.json``, written atomically;
    entries of other datasets are kept."""
    dataset_entry = {
        "name": dataset_name,
        "tokenizer_name": tokenizer_name,
        "path": f"datasets/{dataset_name}",
        "vocab_size": vocab_size,
        "bos_id": bos_id,
        "stats": stats,
        "built_by": BUILT_BY,
    }
    tokenizer_entry = {
        "name": tokenizer_name,
        "kind": "sentencepiece_bpe",
        "vocab_size": vocab_size,
        "model_path": f"tokenizers/{tokenizer_name}.model",
        "vocab_path": f"tokenizers/{tokenizer_name}.vocab",
        "built_by": BUILT_BY,
    }
    manifest_path = root / MANIFEST_NAME
    manifest = read_manifest(manifest_path, "delete it and build again") if manifest_path.exists() else {}
    for key, entry in (("datasets", dataset_entry), ("tokenizers", tokenizer_entry)):
        others = [
            e for e in manifest.get(key, []) if not (isinstance(e, dict) and e.get("name") == entry["name"])
        ]
        manifest[key] = [*others, entry]
    write_manifest(manifest_path, manifest)


def check_build_target(root: Path, dataset_name: str, tokenizer_name: str) -> None:
    """Refuse a build into ``root`` that would replace data an earlier build did not make.

    A build writes ``datasets/<dataset_name>/`` (replacing that folder whole) and
    ``tokenizers/<tokenizer_name>.{model,vocab}``. Replacing an earlier build of the same names is a
    rebuild; replacing fetched shards or a fetched tokenizer would lose a download, or leave fetched
    shards next to a tokenizer that did not make them. Raises DataError naming the entry or the files.
    """
    manifest_path = root / MANIFEST_NAME
    manifest = (
        read_manifest(manifest_path, "fix or delete it, then build again") if manifest_path.exists() else {}
    )
    targets = {f"datasets/{dataset_name}", *(f"tokenizers/{tokenizer_name}{s}" for s in (".model", ".vocab"))}
    fix = "build under another --name, or into another folder"
    rebuilt: set[str] = set()
    for key, name in (("datasets", dataset_name), ("tokenizers", tokenizer_name)):
        for entry in manifest.get(key, []) if isinstance(manifest.get(key), list) else []:
            if not isinstance(entry, dict):
                continue
            files = {str(entry[k]) for k in ("path", "model_path", "vocab_path") if entry.get(k)}
            if entry.get("name") != name and not files & targets:
                continue
            if entry.get("built_by") == BUILT_BY:
                rebuilt |= files
                continue
            raise DataError(
                f"{manifest_path} lists {key[:-1]} {entry.get('name')!r} (not made by prepare build, e.g. "
                f"fetched), which building {dataset_name!r} with tokenizer {tokenizer_name!r} would replace; {fix}"
            )
    for target in sorted(targets - rebuilt):
        if (root / target).exists():
            raise DataError(
                f"{root / target} exists but no build listed in {manifest_path} made it (an interrupted "
                f"fetch?), and building {dataset_name!r} would replace it; {fix}, or delete it"
            )


def write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def merge_fetched(manifest: dict, *, dataset: dict, tokenizer: dict, where: Path, source: str) -> dict:
    """``manifest`` (left unchanged) with a fetched ``dataset`` entry and its ``tokenizer`` entry added.

    An entry already listed under the same name must be identical, and no other tokenizer may claim
    the same files: fetch keeps files already in the folder, so a different entry means those files
    may come from elsewhere and mixing them would go unnoticed. Raises DataError naming the manifest
    ``where``, the entry, ``source`` (the repository fetched from) and the fix.
    """
    merged = dict(manifest)
    fix = f"fetch into another folder, or move the listed files and the entry out of {where}"
    for key, entry in (("datasets", dataset), ("tokenizers", tokenizer)):
        listed = manifest.get(key, [])
        if not isinstance(listed, list):
            raise DataError(f"{where}: {key!r} must be a list, got {type(listed).__name__}; {fix}")
        same_name = next((e for e in listed if isinstance(e, dict) and e.get("name") == entry["name"]), None)
        if same_name is not None and same_name != entry:
            differing = sorted(k for k in {*same_name, *entry} if same_name.get(k) != entry.get(k))
            raise DataError(
                f"{where} already lists {key[:-1]} {entry['name']!r} with other contents than {source} "
                f"publishes (they differ in {', '.join(differing)}); {fix}"
            )
        merged[key] = listed if same_name is not None else [*listed, entry]
    claimed = _tokenizer_files(tokenizer)
    for other in merged["tokenizers"]:
        if isinstance(other, dict) and other.get("name") != tokenizer["name"]:
            shared = claimed & _tokenizer_files(other)
            if shared:
                raise DataError(
                    f"{where}: tokenizer {other.get('name')!r} already uses {', '.join(sorted(shared))}, "
                    f"which tokenizer {tokenizer['name']!r} from {source} needs; {fix}"
                )
    return merged


def _tokenizer_files(entry: dict) -> set[str]:
    return {str(entry[k]) for k in ("model_path", "vocab_path", "path") if entry.get(k)}


def load_built_dataset(root: Path, dataset_name: str) -> BuiltDataset:
    """The dataset ``dataset_name`` under ``root``, checked against its manifest entry.

    Every shard's header is validated and the shard and token counts must match the manifest, so a
    partial or damaged build raises DataError instead of being used.
    """
    try:
        return _checked_dataset(Path(root), dataset_name)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{root}/{MANIFEST_NAME}: malformed entry for {dataset_name!r} ({exc!r}); build again"
        ) from exc


def _checked_dataset(root: Path, dataset_name: str) -> BuiltDataset:
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DataError(f"{root}: no {MANIFEST_NAME}, so no complete build here")
    entry, tokenizer = dataset_entries(
        read_manifest(manifest_path, "delete it and build again"), dataset_name
    )
    if entry is None or tokenizer is None:
        raise DataError(f"{manifest_path}: no dataset {dataset_name!r} with a tokenizer listed")
    dataset_dir = root / entry["path"]
    tokenizer_path = root / tokenizer["model_path"]
    if not tokenizer_path.is_file():
        raise DataError(f"{tokenizer_path}: tokenizer missing; build again")
    stats = entry["stats"]
    tokens: dict[str, int] = {}
    for split in ("val", "train"):
        paths = shard_paths(dataset_dir, split)
        if len(paths) != stats[f"files_{split}"]:
            raise DataError(
                f"{dataset_dir}: {len(paths)} {split} shards, manifest lists {stats[f'files_{split}']}; build again"
            )
        tokens[split] = sum(read_header(p) for p in paths)
        if tokens[split] != stats[f"tokens_{split}"]:
            raise DataError(
                f"{dataset_dir}: {split} shards hold {tokens[split]} tokens, manifest says "
                f"{stats[f'tokens_{split}']}; build again"
            )
    return BuiltDataset(
        dataset_dir=dataset_dir,
        tokenizer_path=tokenizer_path,
        train_tokens=tokens["train"],
        val_tokens=tokens["val"],
        val_docs=stats["docs_val"],
        train_docs=stats["docs_train"],
        vocab_size=entry["vocab_size"],
        train_shards=stats["files_train"],
        val_shards=stats["files_val"],
    )

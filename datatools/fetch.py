"""Fetch the official challenge shards and tokenizer from Hugging Face.

Layout of the published export (read from openai/parameter-golf ``data/cached_challenge_fineweb.py``):
a dataset repository whose ``datasets/`` folder holds ``manifest.json`` (datasets with shard counts,
tokenizers with their files), ``datasets/fineweb10B_<variant>/fineweb_{train,val}_NNNNNN.bin`` and
``tokenizers/fineweb_<vocab>_bpe.{model,vocab}``. The chosen dataset and its tokenizer are mirrored into
``dest`` under the same paths, and their manifest entries are merged into ``dest/manifest.json`` (other
entries, from other fetches or from ``prepare build``, are kept).

Each file goes through ``hf_hub_download``: it lands in the Hugging Face cache (interrupted downloads
resume there; ``HF_HUB_OFFLINE=1`` serves from it) and is then hard-linked (or copied) into ``dest``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from autogolf.errors import DataError
from datatools.manifest import MANIFEST_NAME, dataset_entries, merge_fetched, read_manifest, write_manifest
from datatools.shards import ShardError, read_header, shard_name

OFFICIAL_REPO_ID = "willdepueoai/parameter-golf"
# The larger-vocabulary exports the records used were published by a participant, not in the official
# repository (records' READMEs: `MATCHED_FINEWEB_REPO_ID=kevclark/parameter-golf ... --variant sp8192`).
VARIANT_REPO_IDS = {
    "sp1024": OFFICIAL_REPO_ID,
    "sp4096": "kevclark/parameter-golf",
    "sp8192": "kevclark/parameter-golf",
}
REMOTE_ROOT = "datasets"
_VARIANT = re.compile(r"^(sp\d+|byte260)$")


@dataclass(frozen=True)
class FetchedDataset:
    """An official dataset mirrored locally: shards in ``dataset_dir`` and its tokenizer."""

    variant: str
    repo_id: str
    dataset_dir: Path
    tokenizer_path: Path
    train_shards: int
    val_shards: int
    train_tokens: int
    val_tokens: int


def default_repo_id(variant: str) -> str:
    """``$MATCHED_FINEWEB_REPO_ID`` (the official script's override), else where ``variant`` is published."""
    return os.environ.get("MATCHED_FINEWEB_REPO_ID") or VARIANT_REPO_IDS.get(variant, OFFICIAL_REPO_ID)


def fetch_official(
    variant: str,
    dest: Path,
    train_shards: int,
    *,
    progress: bool = True,
    repo_id: str | None = None,
    cache_dir: Path | None = None,
) -> FetchedDataset:
    """Mirror the validation shards, the first ``train_shards`` train shards and the tokenizer into ``dest``.

    Files already in ``dest`` with a valid header are kept; every downloaded shard's header is verified.
    The dataset's and tokenizer's entries are merged into ``dest/manifest.json``. Raises DataError for
    an unknown variant, too many shards requested, a Hub failure (with what to do), a corrupt shard
    (naming the file), or, before anything is downloaded, a ``dest/manifest.json`` that lists the
    dataset or tokenizer with other contents (data from another source).
    """
    if not _VARIANT.match(variant):
        raise DataError(f"unknown variant {variant!r}; use sp1024, sp4096 or sp8192")
    if train_shards < 0:
        raise DataError(f"train_shards must be 0 or more, got {train_shards}")
    repo_id = repo_id or default_repo_id(variant)
    dest = Path(dest)
    manifest_file = _download(repo_id, f"{REMOTE_ROOT}/{MANIFEST_NAME}", cache_dir)
    manifest = read_manifest(manifest_file, f"it came from {repo_id}; delete it and fetch again")
    dataset_entry, tokenizer_entry, tokenizer_files = _select(manifest, variant, repo_id)
    _merged_manifest(dest, dataset_entry, tokenizer_entry, repo_id)  # refuse a conflict before downloading
    stats = dataset_entry.get("stats") or {}
    available, val_count = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if train_shards > available:
        raise DataError(f"{variant} has {available} train shards on {repo_id}; asked for {train_shards}")
    dataset_rel = f"datasets/{dataset_entry['name']}"
    shards = [f"{dataset_rel}/{shard_name('val', i)}" for i in range(val_count)]
    shards += [f"{dataset_rel}/{shard_name('train', i)}" for i in range(train_shards)]

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_bars_were_off = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        for rel in tqdm(
            [*shards, *tokenizer_files],
            desc=f"fetch {variant}",
            unit="file",
            disable=None if progress else True,
        ):
            _fetch_file(repo_id, rel, dest / rel, cache_dir, is_shard=rel in shards)
    finally:
        if not progress and not hub_bars_were_off:
            enable_progress_bars()
    # Merged again from the file as it is now, so entries written meanwhile by another command survive.
    write_manifest(dest / MANIFEST_NAME, _merged_manifest(dest, dataset_entry, tokenizer_entry, repo_id))

    dataset_dir = dest / dataset_rel
    model = next((f for f in tokenizer_files if f.endswith(".model")), tokenizer_files[0])
    return FetchedDataset(
        variant=variant,
        repo_id=repo_id,
        dataset_dir=dataset_dir,
        tokenizer_path=dest / model,
        train_shards=train_shards,
        val_shards=val_count,
        train_tokens=sum(read_header(dest / s) for s in shards if "_train_" in s),
        val_tokens=sum(read_header(dest / s) for s in shards if "_val_" in s),
    )


def _select(manifest: dict, variant: str, repo_id: str) -> tuple[dict, dict, list[str]]:
    """The manifest's entries for the variant's dataset and its tokenizer, and the tokenizer's files."""
    name = f"fineweb10B_{variant}"
    entry, tokenizer = dataset_entries(manifest, name)
    if entry is None:
        datasets = [d for d in manifest.get("datasets", []) if isinstance(d, dict)]
        published = ", ".join(sorted(str(d.get("name")) for d in datasets)) or "none"
        raise DataError(
            f"{variant} ({name}) is not published in {repo_id} (it has: {published}); "
            f"pass another repo_id / --repo-id, e.g. {VARIANT_REPO_IDS.get(variant, OFFICIAL_REPO_ID)}"
        )
    files = [
        str(tokenizer[k]) for k in ("model_path", "vocab_path", "path") if tokenizer and tokenizer.get(k)
    ]
    if tokenizer is None or not files:
        raise DataError(
            f"manifest of {repo_id}: tokenizer {entry.get('tokenizer_name')!r} of {name} has no files"
        )
    return entry, tokenizer, files


def _merged_manifest(dest: Path, dataset_entry: dict, tokenizer_entry: dict, repo_id: str) -> dict:
    path = dest / MANIFEST_NAME
    local = read_manifest(path, "fix or delete it, then fetch again") if path.exists() else {}
    return merge_fetched(local, dataset=dataset_entry, tokenizer=tokenizer_entry, where=path, source=repo_id)


def _fetch_file(repo_id: str, rel: str, target: Path, cache_dir: Path | None, *, is_shard: bool) -> None:
    if is_shard and target.is_file():
        try:
            read_header(target)
            return
        except ShardError:
            target.unlink()  # damaged earlier copy: fetch it again
    elif target.is_file():
        return
    cached = _download(repo_id, f"{REMOTE_ROOT}/{rel}", cache_dir)
    if is_shard:
        try:
            read_header(cached)
        except ShardError as exc:
            raise DataError(
                f"downloaded shard {rel} from {repo_id} is corrupt: {exc}. Delete {cached.resolve()} "
                "from the Hugging Face cache and fetch again."
            ) from exc
    _place(cached, target)


def _download(repo_id: str, filename: str, cache_dir: Path | None) -> Path:
    """``hf_hub_download`` of one file of the dataset repository, with Hub failures as DataError."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    where = f"{filename} of the Hugging Face dataset {repo_id}"
    try:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", cache_dir=cache_dir))
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        raise DataError(
            f"cannot access {repo_id}: {exc}. Log in with `hf auth login` or set HF_TOKEN."
        ) from exc
    except LocalEntryNotFoundError as exc:
        offline = " (HF_HUB_OFFLINE is set: unset it to download)" if constants.HF_HUB_OFFLINE else ""
        raise DataError(f"{where} is not in the local cache and the Hub is unreachable{offline}") from exc
    except EntryNotFoundError as exc:
        raise DataError(f"{where} does not exist") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise DataError(f"could not download {where}: {exc}; run the fetch again to resume") from exc


def _place(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` atomically: a hard link when on the same disk, else a copy."""
    source = Path(source).resolve(strict=True)  # cache entries are symlinks to blobs
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    try:
        os.link(source, part)
    except OSError:
        shutil.copyfile(source, part)
    os.replace(part, target)

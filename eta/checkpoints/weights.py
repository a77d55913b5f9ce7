"""A checkpoint's files read by name: its config, its safetensors weights, and exact name checks.

A checkpoint is a local directory or a hub id (downloaded once into the hub cache, model code
excluded). Weights are read tensor by tensor from single or sharded safetensors files; a set of
names that differs from the layout a loader expects is a ``WeightNameError`` listing the names
missing and the names unexpected.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import torch

log = logging.getLogger(__name__)

# Files a native loader reads; the repository's Python files are never fetched.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
LAYOUTS = {"armorm": "LlamaForRewardModelWithGating", "internlm2": "internlm2"}


class WeightNameError(ValueError):
    """The weight names of a checkpoint are not the layout its loader expects."""


def checkpoint_dir(source: str) -> Path:
    """The local directory of a checkpoint (a hub id is downloaded, without its code files)."""
    path = Path(source)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    log.info("fetching %s from the hub (config, tokenizer and safetensors files)", source)
    return Path(snapshot_download(source, allow_patterns=CHECKPOINT_FILES))


def read_config(source: str | Path) -> dict:
    """``config.json`` of a local directory or hub id as a plain dict."""
    from transformers.utils import cached_file

    path = cached_file(str(source), "config.json")
    return json.loads(Path(path).read_text())


def layout(source: str) -> str | None:
    """``"armorm"`` or ``"internlm2"`` when the checkpoint is one this package loads natively."""
    try:
        config = read_config(source)
    except OSError:  # no config.json (open_clip, GGUF): not a checkpoint of ours
        return None
    if LAYOUTS["armorm"] in (config.get("architectures") or []):
        return "armorm"
    if config.get("model_type") == LAYOUTS["internlm2"]:
        return "internlm2"
    return None


def weight_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (sharded or single file)."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: directory / file for name, file in weight_map.items()}
    single = directory / "model.safetensors"
    if not single.exists():
        raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json "
                                "(only safetensors checkpoints are read natively)")
    from safetensors import safe_open

    with safe_open(single, framework="pt") as f:
        return {name: single for name in f.keys()}


def check_names(found: set[str], expected: set[str], where: str) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise WeightNameError(
            f"{where}: weight names do not match the expected layout; "
            f"missing ({len(missing)}): {missing}; unexpected ({len(unexpected)}): {unexpected}")


def read_tensors(files: dict[str, Path], dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every name of ``files``, one file open at a time, cast to ``dtype``."""
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name, file in files.items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(file, framework="pt") as f:
            for name in names:
                tensor = f.get_tensor(name)
                yield name, tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor

"""Shared fixtures: models are built once per session (tiny twins in seconds, SmolLM2 once)."""

from __future__ import annotations

import functools

import pytest
from PIL import Image


@functools.lru_cache(maxsize=None)
def vlm(name: str):
    from eta.models import load_vlm

    return load_vlm(name, device="cpu", dtype="float32")


@functools.lru_cache(maxsize=None)
def reward_model(name: str):
    from eta.evaluators import load_reward_model

    return load_reward_model(name, device="cpu", dtype="float32")


@functools.lru_cache(maxsize=None)
def clip(name: str = "tiny-clip"):
    from eta.evaluators import load_clip

    return load_clip(name, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).convert("RGB")


@pytest.fixture(scope="session")
def photo_path(tmp_path_factory, photo):
    path = tmp_path_factory.mktemp("img") / "cat.png"
    photo.save(path)
    return path


def write_parameterised_notebook(path, parameters: str, body, needs=None):
    """A papermill-ready notebook: a NAME cell, a ``parameters``-tagged cell, then ``body``
    (``needs``: the models it declares in ``metadata.eta.needs``; None declares nothing)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell(parameters, metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[new_code_cell(f"NAME = {path.stem!r}"), params, *map(new_code_cell, body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if needs is not None:
        nb.metadata["eta"] = {"needs": list(needs)}
    nbformat.write(nb, str(path))
    return path

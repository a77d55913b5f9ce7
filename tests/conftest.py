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

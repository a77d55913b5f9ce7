"""A notebook's parameters for a profile: its ``parameters`` cell, overridden strictly by a YAML file.

``load_params`` reads the defaults of a notebook's papermill ``parameters`` cell and overrides them
with ``params/<profile>/<notebook>.yaml`` (a profile that ``extends:`` another falls back to its
base's file). Strict: a key the cell does not define, a key reproduce sets itself
(``SET_BY_REPRODUCE``) or a value of another type than its default is an error naming the file
and the key. A default that is not a literal is kept as its source text (``Expression``).
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from eta.config import ConfigError, params_dir

log = logging.getLogger(__name__)

SET_BY_REPRODUCE = ("profile", "output_dir", "wandb_group")  # every notebook has these parameters


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The ``parameters`` cell of a notebook as papermill reads it (name -> default, help, type)."""
    import papermill

    return papermill.inspect_notebook(str(path))


class Expression(str):
    """A parameter default that is not a literal (kept as its source text, never type-checked)."""


def default_value(spec: Mapping[str, Any]) -> Any:
    """A parameter's default as a Python value (its source text when it is not a literal)."""
    text = spec.get("default", "None")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return Expression(text)


def check_type(key: str, value: Any, default: Any, source: str) -> None:
    """A params value must have its default's type (None allowed, an int where a float is)."""
    if value is None or default is None or isinstance(default, Expression):
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, (int, str, list, dict, tuple)):
        ok = isinstance(value, type(default)) or isinstance(default, tuple) and isinstance(value, list)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{source}: {key!r} must be {type(default).__name__} like its default "
                          f"{default!r}, got {type(value).__name__} {value!r}")


def params_file(profile: str, notebook: Path, root: str | os.PathLike | None = None) -> Path:
    """The profile's params file for a notebook; a profile that extends another (``extends:``)
    uses its base's file where it has none of its own."""
    from eta.config import profile_base

    path = Path(root or params_dir()) / profile / f"{notebook.stem}.yaml"
    base = profile_base(profile, root)
    if not path.is_file() and base:
        return params_file(base, notebook, root)
    return path


def load_params(profile: str, notebook: Path, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The notebook's parameters for a profile: its defaults, overridden strictly by the YAML file."""
    declared = notebook_parameters(notebook)
    missing = [k for k in SET_BY_REPRODUCE if k not in declared]
    if missing:
        raise ConfigError(f"{notebook}: the parameters cell must define {', '.join(missing)}")
    path = params_file(profile, notebook, root)
    raw: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a params file is a mapping, got {type(loaded).__name__}")
        raw = loaded or {}
    else:
        log.warning("%s: no params file %s; using the notebook's defaults", notebook.stem, path)
    values = {name: default_value(spec) for name, spec in declared.items()}
    for key, value in raw.items():
        if key not in declared:
            raise ConfigError(f"{path}: unknown key {key!r}: not a parameter of {notebook.name} "
                              f"(its parameters: {', '.join(declared)})")
        if key in SET_BY_REPRODUCE:
            raise ConfigError(f"{path}: {key!r} is set by reproduce, not by a params file")
        check_type(key, value, values[key], str(path))
        values[key] = value
    return values

"""The built-in model templates: the TOML specs under templates/ (prototxt_gen.templates once
installed)."""
from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import SpecError


def template_dir() -> Path:
    try:
        from importlib.resources import files
        root = files("prototxt_gen.templates")
        path = Path(str(root))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    # A source checkout used without installing: templates/ beside the package.
    return Path(__file__).resolve().parent.parent / "templates"


def template_names() -> list[str]:
    return sorted(p.stem for p in template_dir().glob("*.toml"))


def find_template(name: str) -> Path:
    path = template_dir() / f"{name}.toml"
    if path.is_file():
        return path
    names = template_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else \
        "run 'prototxt-gen list' to see the models"
    raise SpecError(f"unknown model '{name}' ({hint})")


def describe_templates() -> list[tuple[str, str]]:
    """(name, description) of every template, for `prototxt-gen list`."""
    from .spec import load_spec
    return [(name, load_spec(template_dir() / f"{name}.toml").description)
            for name in template_names()]

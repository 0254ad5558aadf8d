"""``artifact.cache``: dependency layers a build reuses while its lock files do not change (docs/config.md).

A cache names key files (the dependency lock files, committed) and paths (the directories the build's
dependency step makes: ``wheels``, ``node_modules``). Its key (:func:`layer_key`) is the sha256 of the key
files' names and contents, the paths and the build commands as written: the same lock, the same layer.
Before the build commands run, the layer stored under the commit's key is restored into the fresh export;
after they succeed, a layer not stored yet is saved. The build commands still run, and the artifact is
still everything ``artifact.paths`` selects in the workspace: a restored layer is an input of the build,
never a part of the artifact's identity. Pure: reading and writing layers is artifacts/layers.py's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from slipway.model.base import NAME_RE, Frozen, HintedValueError

#: Changes whenever what :func:`layer_key` hashes changes, so that an older layer is never taken for a newer.
KEY_FORMAT = 1
_GLOB = re.compile(r"[*?\[\]]")


def relative_path(value: str, *, what: str, example: str) -> str:
    """``value`` as a clean relative path inside the project; a hinted ValueError if it is not one."""
    hint = f"name it relative to the directory of slipway.yml, e.g. {example}"
    if value.startswith("/") or value.startswith("~"):
        raise HintedValueError(f"{what} {value!r} is an absolute path", hint=hint)
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise HintedValueError(f"{what} {value!r} leaves the project ('..')", hint=hint)
    if not parts:
        raise HintedValueError(f"{what} {value!r} is the whole project", hint=hint)
    if _GLOB.search(value):
        raise HintedValueError(f"{what} {value!r} is a glob pattern", hint=f"name each path on its own, e.g. {example}")
    return "/".join(parts)


KeyFile = Annotated[
    str, AfterValidator(partial(relative_path, what="cache key file", example="requirements.txt or package-lock.json"))
]
LayerPath = Annotated[str, AfterValidator(partial(relative_path, what="cache path", example="wheels or node_modules"))]


class BuildCache(Frozen):
    """One dependency layer: the ``paths`` one build made, reused while the ``key`` files are the same."""

    #: Files of the commit whose contents decide the layer: the dependency lock files.
    key: tuple[KeyFile, ...] = Field(min_length=1)
    #: Directories (or files) the build makes from them, restored before the build commands run.
    paths: tuple[LayerPath, ...] = Field(min_length=1)

    @field_validator("key", "paths", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    #: The cache's name (its directory under .slipway/cache); default: made from ``paths``.
    name: str | None = Field(default=None, pattern=NAME_RE)
    #: How many layers of this cache are kept, the most recently used first.
    keep: int = Field(default=3, ge=1, le=100)

    @property
    def label(self) -> str:
        """The cache's name: ``name``, else its paths joined (``wheels``, ``node_modules``)."""
        if self.name:
            return self.name
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "+".join(self.paths)).strip("-.") or "layer"


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


@dataclass(frozen=True)
class CacheProblem:
    """What is wrong with one cache of a build, where (below ``artifact.cache``), and what to do."""

    loc: tuple[str | int, ...]
    message: str
    hint: str


def cache_problem(caches: Sequence[BuildCache]) -> CacheProblem | None:
    """Caches of one build: unique names, paths no other cache holds, key files outside every path."""
    seen: dict[str, int] = {}
    owner: dict[str, int] = {}
    for i, cache in enumerate(caches):
        if cache.label in seen:
            return CacheProblem((i, "name"), f"cache[{seen[cache.label]}] is named {cache.label!r} too",
                                "give each cache its own name (name: ...)")
        seen[cache.label] = i
        for j, path in enumerate(cache.paths):
            other = next((k for p, k in owner.items() if _inside(path, p) or _inside(p, path)), None)
            if other is not None:
                return CacheProblem((i, "paths", j), f"cache path {path!r} overlaps a path of cache[{other}]",
                                    "each directory belongs to one cache: merge the two, or name other directories")
            owner[path] = i
        for j, key in enumerate(cache.key):
            if any(_inside(key, path) for path in cache.paths):
                return CacheProblem((i, "key", j), f"cache key file {key!r} is inside one of the cache's paths",
                                    "the key is a committed lock file; the paths are what the build makes from it")
    return None


def layer_key(cache: BuildCache, *, build: Sequence[str], files: Sequence[tuple[str, str]]) -> str:
    """``sha256:<hex>`` naming the layer: ``files`` are (key file, sha256 hex of its contents) pairs."""
    payload = {
        "format": KEY_FORMAT,
        "key": [[name, digest] for name, digest in files],
        "paths": list(cache.paths),
        "build": list(build),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

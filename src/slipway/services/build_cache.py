"""A build's dependency layers (``artifact.cache``, model/build_cache.py): restored into the fresh export
before the build commands run, saved after they succeed, each decision a recorded step of the build stage.

The layer of a cache is found by its key: the sha256 of the key files as the commit holds them, the paths
and the build commands (:func:`slipway.model.build_cache.layer_key`). A hit unpacks the stored layer (its
bytes checked first); a miss leaves the paths to the build commands and saves what they made, once they all
succeed, then prunes the cache to its ``keep`` most recently used layers. The commands run either way:
written as docs/config.md ("Dependency layers") shows, they find their output present and do nothing.
What the artifact holds is decided as before: the files ``artifact.paths`` selects in the workspace.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from slipway.artifacts.layers import Layer, LayerCache
from slipway.artifacts.store import sha256_file
from slipway.config import LoadedConfig
from slipway.engine.steps import StepRunner
from slipway.errors import ArtifactError
from slipway.model.build_cache import BuildCache, layer_key
from slipway.model.config import ArtifactSpec
from slipway.ports import Target
from slipway.services.app import App

CACHE_DIR = "cache"


@dataclass(frozen=True)
class PlannedLayer:
    """One cache of a build: its key for this commit, and whether its layer was restored."""

    cache: BuildCache
    key: str
    hit: bool


def layer_cache(app: App) -> LayerCache:
    """The project's layers, in ``.slipway/cache`` next to the artifact store."""
    return LayerCache(app.settings.state_dir / CACHE_DIR)


def caches_of(loaded: LoadedConfig) -> tuple[BuildCache, ...]:
    """The ``artifact.cache`` entries (none for an image artifact)."""
    artifact = loaded.project.artifact
    return artifact.cache if isinstance(artifact, ArtifactSpec) else ()


def check_key_files(loaded: LoadedConfig, tree: Path, *, where: str) -> None:
    """Every cache's key files are files in ``tree``; a ConfigError at the first that is not."""
    for i, cache in enumerate(caches_of(loaded)):
        for j, name in enumerate(cache.key):
            if (tree / name).is_file():
                continue
            raise loaded.error(
                f"cache key file {name!r} is not a file in {where}",
                ("artifact", "cache", i, "key", j),
                hint=f"a dependency layer is keyed on the project's lock file: commit {name} (pip: 'pip freeze > "
                "requirements.txt' or pip-compile; npm: 'npm install' writes package-lock.json), or name the lock "
                "file the project has",
            )


def _check_not_committed(loaded: LoadedConfig, index: int, cache: BuildCache, tree: Path, commit: str) -> None:
    """A cache path is made by the build alone: one the commit holds would be overwritten by a stale layer."""
    for j, path in enumerate(cache.paths):
        if (tree / path).exists() or (tree / path).is_symlink():
            raise loaded.error(
                f"cache path {path!r} is in commit {commit[:12]}: a cache holds only what the build makes",
                ("artifact", "cache", index, "paths", j),
                hint=f"remove it from the repository ('git rm -r --cached {path}', and add it to .gitignore), "
                "or cache the directory the dependency step writes",
            )


def _key(loaded: LoadedConfig, cache: BuildCache, tree: Path) -> str:
    artifact = loaded.project.artifact
    build = artifact.build if isinstance(artifact, ArtifactSpec) else ()
    return layer_key(cache, build=build, files=[(name, sha256_file(tree / name)) for name in cache.key])


async def restore_layers(
    app: App, loaded: LoadedConfig, tree: Path, *, steps: StepRunner, target: Target, commit: str
) -> list[PlannedLayer]:
    """Restore each cache's layer for this commit into ``tree`` (the fresh export), one recorded step each."""
    caches = caches_of(loaded)
    check_key_files(loaded, tree, where=f"commit {commit[:12]}")
    planned = []
    for i, cache in enumerate(caches):
        _check_not_committed(loaded, i, cache, tree, commit)
        key = _key(loaded, cache, tree)
        hits: list[bool] = []

        async def restore(cache: BuildCache = cache, key: str = key, hits: list[bool] = hits) -> str:
            hit, note = await asyncio.to_thread(_restore, layer_cache(app), cache, key, tree)
            hits.append(hit)
            return note

        await steps.run_builtin(target, f"dependency cache: {cache.label}", restore)
        planned.append(PlannedLayer(cache, key, hits == [True]))
    return planned


def _restore(store: LayerCache, cache: BuildCache, key: str, tree: Path) -> tuple[bool, str]:
    """Unpack the layer of ``key`` if there is a sound one: (whether it was, the step's note)."""
    paths = ", ".join(cache.paths)
    layer = store.lookup(cache.label, key)
    if layer is None:
        return False, f"dependency cache miss (key {key}): the build commands make {paths}; saved once they succeed"
    try:
        store.restore(cache.label, layer, tree)
    except ArtifactError as exc:
        store.forget(cache.label, layer)
        _remove(tree, cache.paths)  # nothing half-unpacked is left for the build commands to trust
        return False, (
            f"dependency cache miss (key {key}): the stored layer {layer.digest} cannot be used ({exc.message}); "
            f"removed, the build commands make {paths} again"
        )
    return True, f"dependency cache hit (key {key}): restored {', '.join(layer.paths)} from {_describe(layer)}"


def _remove(tree: Path, paths: tuple[str, ...]) -> None:
    for rel in paths:
        path = tree / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


async def save_layers(app: App, planned: list[PlannedLayer], tree: Path, *, steps: StepRunner, target: Target) -> None:
    """Save the layers the build commands just made (each cache that missed), then prune those caches."""
    for layer in planned:
        if layer.hit:
            continue

        async def save(layer: PlannedLayer = layer) -> str:
            return await asyncio.to_thread(_save, layer_cache(app), layer, tree)

        await steps.run_builtin(target, f"dependency cache: save {layer.cache.label}", save)


def _save(store: LayerCache, planned: PlannedLayer, tree: Path) -> str:
    """Store the layer and prune; the note says what happened. A layer that cannot be stored fails nothing:
    the artifact does not depend on it, and the next build makes it again."""
    cache = planned.cache
    try:
        layer = store.save(cache.label, planned.key, tree, cache.paths)
        removed = store.prune(cache.label, keep=cache.keep)
    except (OSError, ArtifactError) as exc:
        return f"dependency cache not saved ({exc}): the next build with key {planned.key} makes it again"
    if layer is None:
        return f"dependency cache: nothing to save, the build made none of {', '.join(cache.paths)}"
    pruned = f"; pruned {len(removed)} older entr{'y' if len(removed) == 1 else 'ies'}" if removed else ""
    return f"dependency cache saved (key {planned.key}): {', '.join(layer.paths)} as {_describe(layer)}{pruned}"


def _describe(layer: Layer) -> str:
    return f"layer {layer.digest} ({layer.files} files, {layer.size} bytes)"


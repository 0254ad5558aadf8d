"""Issue 15: ``artifact.cache`` in slipway.yml (its errors point home, with a hint), the layer key, and the
layer store on the real disk (round trip, a layer that would write outside its paths)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from slipway.artifacts.layers import LayerCache
from slipway.artifacts.store import sha256_file
from slipway.config import parse_config
from slipway.errors import ConfigError, UnsafeArchive
from slipway.model.build_cache import BuildCache, layer_key

pytestmark = pytest.mark.timeout(60)

BASE = """\
version: 1
name: demo
artifact:
  build: ["make deps"]
  paths: ["."]
  cache:
{cache}
environments:
  dev:
    targets: [{{kind: local, name: dev-1, path: .slipway/targets/dev}}]
pipeline:
  - {{name: build, kind: build}}
"""


def load(cache: str) -> None:
    parse_config(BASE.format(cache=cache), path=Path("/project/slipway.yml"))


@pytest.mark.parametrize(
    ("cache", "line", "where", "message", "hint"),
    [
        ("    - key: [/etc/lock]\n      paths: [wheels]", 7, "artifact.cache[0].key[0]", "'/etc/lock' is an absolute path",
         "relative to the directory of slipway.yml"),
        ("    - key: [requirements.txt]\n      paths:\n        - wheels\n        - ../up", 10,
         "artifact.cache[0].paths[1]", "cache path '../up' leaves the project", "e.g. wheels or node_modules"),
        ("    - key: requirements*.txt\n      paths: wheels", 7, "artifact.cache[0].key[0]", "is a glob pattern",
         "name each path on its own"),
        ("    - key: [requirements.txt]\n      paths: [./]", 8, "artifact.cache[0].paths[0]", "is the whole project",
         "e.g. wheels"),
        ("    - {key: [a.lock], paths: [deps]}\n    - {key: [b.lock], paths: [deps/sub]}", 8,
         "artifact.cache[1].paths[0]", "cache path 'deps/sub' overlaps a path of cache[0]", "each directory belongs to one cache"),
        ("    - {key: [a.lock], paths: [deps], name: x}\n    - {key: [b.lock], paths: [other], name: x}", 8,
         "artifact.cache[1].name", "cache[0] is named 'x' too", "give each cache its own name"),
        ("    - {key: [deps/lock], paths: [deps]}", 7, "artifact.cache[0].key[0]", "is inside one of the cache's paths",
         "committed lock file"),
        ("    - {key: [], paths: [deps]}", 7, "artifact.cache[0].key", "at least 1 item", ""),
    ],
)
def test_bad_cache_entries_are_config_errors_with_line_and_hint(
    cache: str, line: int, where: str, message: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(cache)
    error = caught.value
    assert (error.line, error.key_path) == (line, where), str(error)
    assert message in error.reason and hint in error.hint, (error.reason, error.hint)


def test_paths_are_normalised_and_named() -> None:
    cache = BuildCache(key=("./requirements.txt",), paths=("wheels/",))
    assert (cache.key, cache.paths, cache.label, cache.keep) == (("requirements.txt",), ("wheels",), "wheels", 3)
    assert BuildCache(key=("a",), paths=(".venv", "node_modules")).label == "venv-node_modules"


def test_the_key_covers_the_lock_contents_the_paths_and_the_build_commands() -> None:
    cache = BuildCache(key=("requirements.txt",), paths=("wheels",))
    files = [("requirements.txt", "sha256:" + "a" * 64)]
    key = layer_key(cache, build=("pip wheel",), files=files)
    assert key.startswith("sha256:") and key == layer_key(cache, build=("pip wheel",), files=list(files))
    others = {
        layer_key(cache, build=("pip wheel",), files=[("requirements.txt", "sha256:" + "b" * 64)]),
        layer_key(cache, build=("pip wheel --no-deps",), files=files),
        layer_key(BuildCache(key=("requirements.txt",), paths=("wheelhouse",)), build=("pip wheel",), files=files),
    }
    assert key not in others and len(others) == 3


def test_a_layer_round_trips_files_modes_and_links(tmp_path: Path) -> None:
    built = tmp_path / "built"
    (built / "deps/bin").mkdir(parents=True)
    (built / "deps/lib.txt").write_text("library\n")
    (built / "deps/bin/tool").write_text("#!/bin/sh\n")
    (built / "deps/bin/tool").chmod(0o755)
    os.symlink("bin/tool", built / "deps/tool")
    store = LayerCache(tmp_path / "cache")
    key = "sha256:" + "1" * 64
    saved = store.save("deps", key, built, ("deps", "missing"))
    assert saved is not None and saved.paths == ("deps",) and saved.files == 2
    assert store.lookup("deps", key) == saved and store.lookup("deps", "sha256:" + "2" * 64) is None
    assert oct((tmp_path / "cache/deps").stat().st_mode & 0o777) == "0o700"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    store.restore("deps", saved, fresh)
    assert (fresh / "deps/lib.txt").read_text() == "library\n"
    assert os.access(fresh / "deps/bin/tool", os.X_OK) and os.readlink(fresh / "deps/tool") == "bin/tool"


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


@pytest.mark.parametrize("escape", ["a file outside its paths", "a file through a link"])
def test_a_layer_that_would_write_outside_its_paths_is_refused(tmp_path: Path, escape: str) -> None:
    store = LayerCache(tmp_path / "cache")
    key = "sha256:" + "3" * 64
    built, outside = tmp_path / "built", tmp_path / "outside"
    (built / "deps").mkdir(parents=True)
    (built / "deps/a").write_text("a")
    outside.mkdir()
    assert store.save("deps", key, built, ("deps",)) is not None
    # Someone rewrites the layer and its key record alike: the digest matches, the contents escape.
    members = ([_file("app.py", b"evil")] if escape == "a file outside its paths"
               else [_symlink("deps/out", str(outside)), _file("deps/out/evil", b"evil")])
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for info, data in members:
            tar.addfile(info, data)
    digest = sha256_file(evil)
    os.replace(evil, tmp_path / "cache/deps/layers" / f"{digest.split(':')[1]}.tar")
    record = tmp_path / "cache/deps/keys" / f"{key.split(':')[1]}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "digest": digest}))
    layer = store.lookup("deps", key)
    assert layer is not None and layer.digest == digest
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(UnsafeArchive, match="outside its paths"):
        store.restore("deps", layer, dest)
    assert not (dest / "app.py").exists() and not (outside / "evil").exists()

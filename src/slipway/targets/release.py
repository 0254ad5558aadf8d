"""The release layout every target shares, driven only through the Target protocol.

On each host, under its deploy root::

    releases/<release-id>/     one directory per release, hard links into the object store
    shared/                    files that persist across releases, linked into each
    current -> releases/<id>   switched atomically: a new link, then rename over the old one
    .slipway/objects/<sha256>-<mode>   file contents by hash (the host's content-addressed store)
    .slipway/tmp/              uploads in progress

Installing a release takes two round trips. The first creates the layout, reads ``current`` and asks
which contents the host lacks; the second sends only those in one tar stream, verifies their hashes on
the host, then builds ``releases/<id>.partial`` from hard links and renames it to ``releases/<id>`` only
once it is complete. A directory without ``.partial`` is therefore always a complete release, and
``current`` only ever points at one. Everything here is POSIX shell plus GNU tar, the same on a laptop
directory, an SSH host or a container volume. Every command here leaves no process behind, so each is
run ``contained`` (:meth:`slipway.ports.Target.run`).
"""

from __future__ import annotations

import asyncio
import io
import json
import posixpath
import tarfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from shlex import quote

from slipway.artifacts.archive import FileEntry, Manifest, check_link_target, check_member_path
from slipway.errors import CommandFailed, CommandResult, DeploymentError
from slipway.ports import Target

MARKER = ".slipway-release"
OBJECTS = ".slipway/objects"
TMP = ".slipway/tmp"

#: What the host answers when the release is already complete there (no object name looks like it).
_INSTALLED = "installed"
#: The exit code of a combined upload-and-build whose upload failed (its build never started).
_UPLOAD_FAILED = 86

#: Returns the contents for the requested sha256 hex digests.
ObjectSource = Callable[[set[str]], Awaitable[dict[str, bytes]]]


@dataclass(frozen=True)
class InstallStats:
    """What installing one release on one host cost."""

    objects_sent: int
    bytes_sent: int
    already_installed: bool


def _check(result: CommandResult, what: str) -> CommandResult:
    if not result.ok:
        raise CommandFailed.from_result(result, what=what)
    return result


def release_dir(target: Target, release_id: str) -> str:
    """Absolute path of a release on the target."""
    return f"{target.root}/releases/{release_id}"


def shared_link_target(path: str) -> str:
    """Relative symlink target from ``releases/<id>/<path>`` to ``shared/<path>``."""
    return "../" * (len(PurePosixPath(path).parts) + 1) + f"shared/{path}"


def validate_release_id(release_id: str) -> str:
    """Release ids become directory names: letters, digits, dot, dash and underscore only."""
    if not release_id or not all(c.isalnum() or c in "._-" for c in release_id) or release_id[0] == ".":
        raise DeploymentError(f"invalid release id {release_id!r}")
    return release_id


async def share_object_store(target: Target, store: str, *, timeout: float = 60) -> None:
    """Make the layout at ``target.root`` keep its contents in ``store`` (a symlink), if it has none yet.

    Blue/green keeps two layouts per host; sharing one object store means a slot's first deployment
    sends only what the host lacks, not the whole artifact. A layout that already has its own store keeps
    it. Hard links through the symlinked directory stay on the same filesystem as ``store``.
    """
    link = f"{target.root}/{OBJECTS}"
    parent = str(PurePosixPath(link).parent)
    relative = posixpath.relpath(store, parent)  # works for relative roots too, and survives moving the root
    script = (
        f"mkdir -p -- {quote(store)} {quote(parent)} && "
        f"if [ ! -e {quote(link)} ] && [ ! -L {quote(link)} ]; then ln -s -- {quote(relative)} {quote(link)}; fi"
    )
    _check(await target.run(script, timeout=timeout, contained=True), "cannot link the shared object store")


async def release_exists(target: Target, release_id: str, *, timeout: float = 60, digest: str = "") -> bool:
    """Whether a complete release with this id (and, given ``digest``, of that artifact) is on the target.

    The id names its artifact by only 12 hex digits: with ``digest`` the marker must name the whole digest,
    so a directory that holds something else is never taken for the release.
    """
    path = f"{release_dir(target, validate_release_id(release_id))}/{MARKER}"
    cmd = f"test -f {quote(path)}"
    if digest:
        cmd += f" && grep -qF {quote(json.dumps({'digest': digest})[1:-1])} {quote(path)}"
    result = await target.run(cmd, timeout=timeout, contained=True)
    return result.ok


def _under(path: str, shared: Sequence[str]) -> bool:
    return any(path == s or path.startswith(s + "/") for s in shared)


class ObjectCache:
    """File contents read once per deployment, upload bundles built once per distinct set, and the
    release's link tar built once.

    A fleet usually lacks the same contents on every host: reading and hashing the artifact, and
    building the tar stream, once instead of once per host is most of what keeps a 50-host deployment
    close to a plain ``tar | ssh``. The link tar is the same for every host too (2,000 files: 60 ms of
    the deployer's CPU per build). It holds at most the artifact's size in memory.
    """

    def __init__(self, manifest: Manifest, read: ObjectSource) -> None:
        self.manifest = manifest
        self._read = read
        self._contents: dict[str, bytes] = {}
        self._bundles: dict[frozenset[str], tuple[bytes, int]] = {}
        self._payloads: dict[tuple[frozenset[str], bytes], bytes] = {}
        self._links: dict[tuple[str, tuple[str, ...], Marker | None], bytes] = {}
        self._lock = asyncio.Lock()

    def links(self, release_id: str, shared: Sequence[str], marker: Marker | None) -> bytes:
        """The release's :func:`link_tar`, built once for every host (it refuses an unsafe link)."""
        key = (release_id, tuple(shared), marker)
        if key not in self._links:
            self._links[key] = link_tar(self.manifest, release_id, shared, marker=marker)
        return self._links[key]

    async def bundle(self, names: frozenset[str]) -> tuple[bytes, int]:
        """A tar stream of the objects ``names`` (and the bytes of content in it)."""
        async with self._lock:
            if names not in self._bundles:
                wanted = {f.object_name: f for f in self.manifest.files if f.object_name in names}
                needed = {f.sha256 for f in wanted.values()} - self._contents.keys()
                if needed:
                    self._contents.update(await self._read(needed))
                self._bundles[names] = await asyncio.to_thread(_object_tar, wanted, self._contents)
            return self._bundles[names]


    async def payload(self, names: frozenset[str], links: bytes) -> tuple[bytes, int]:
        """The upload of ``names`` followed by ``links``, built once for every host that needs the same."""
        stream, sent = await self.bundle(names) if names else (b"", 0)
        key = (names, links)
        if key not in self._payloads:
            self._payloads = {key: stream + links}  # one deployment, one release: keep only the latest
        return self._payloads[key], sent


def _object_tar(wanted: dict[str, FileEntry], contents: dict[str, bytes]) -> tuple[bytes, int]:
    buf = io.BytesIO()
    sent = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, entry in sorted(wanted.items()):
            data = contents[entry.sha256]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o555 if entry.executable else 0o444
            tar.addfile(info, io.BytesIO(data))
            sent += len(data)
    return buf.getvalue(), sent


def _take(size: int) -> str:
    """A shell pipeline start that passes on exactly ``size`` bytes of stdin and leaves the rest.

    GNU dd with ``count_bytes`` copies in large blocks (a third of ``head -c``'s CPU on a 50 MB upload);
    ``head -c`` elsewhere (busybox).
    """
    return (
        "{ if dd if=/dev/null bs=1M iflag=fullblock,count_bytes count=0 status=none 2>/dev/null; "
        f"then dd bs=1M iflag=fullblock,count_bytes count={size} status=none; else head -c {size}; fi; }}"
    )


def _upload_script(incoming: str, store: str, count: int) -> str:
    """Unpack a tar of objects from stdin, check every hash on the host, then move them into the store."""
    # Each line is "<hash>  ./<hash>-<mode>" (sha256sum) or "<hash> *./<hash>-<mode>" (openssl -r): any
    # line whose name does not start with its hash is bad. openssl when the host has it: it uses the CPU's
    # SHA instructions, about five times faster than coreutils' sha256sum, which hashed most of the bytes
    # a fleet deployment costs its hosts beyond unpacking.
    return (
        f"rm -rf {quote(incoming)} && mkdir -p {quote(incoming)} && cd {quote(incoming)} && "
        "tar -x --no-same-owner -f - && "
        'if command -v openssl >/dev/null 2>&1; then hash="openssl dgst -sha256 -r"; else hash=sha256sum; fi && '
        "find . -type f -exec $hash {} + | "
        f"awk -v want={count} "
        '\'{ n = $2; sub(/^\\*/, "", n); sub(/^\\.\\//, "", n); '
        'if (index(n, $1 "-") != 1) { print "bad object " n; bad = 1 } } '
        # A hasher that failed or printed nothing must not pass for "every hash matched".
        'END { if (NR != want) { print "verified " NR " of " want " objects"; bad = 1 } exit bad }\' && '
        f"find . -type f -exec mv -f -t {quote(store)} {{}} + ; rc=$?; cd / && rm -rf {quote(incoming)}; exit $rc"
    )


async def _remove(target: Target, path: str, *, timeout: float) -> None:
    """Remove what a failed step left behind (an upload's directory, a partial release)."""
    await target.run(f"rm -rf -- {quote(path)}", timeout=timeout, contained=True)


async def _upload_failure(target: Target, sent: int, *, timeout: float) -> str:
    """What went wrong with an upload, with the disk's free space when it was too small."""
    space = await _free_space(target, timeout=timeout)
    what = "uploading release contents failed"
    if space is not None and space < sent:
        what += f" (the deploy root has {space} bytes free, the release needs {sent}: the disk is full)"
    return what


async def _free_space(target: Target, *, timeout: float) -> int | None:
    """Bytes free on the filesystem of the deploy root, for the evidence of a failed upload."""
    result = await target.run(f"df -Pk {quote(target.root)} | tail -n 1", timeout=timeout, contained=True)
    fields = result.stdout.split()
    return int(fields[3]) * 1024 if result.ok and len(fields) >= 4 and fields[3].isdigit() else None


@dataclass(frozen=True)
class Marker:
    """What ``releases/<id>/.slipway-release`` says: the release, its artifact, and the two commits.

    ``commit`` is the commit of the run being deployed (``release.commit``); ``artifact_commit`` is the
    commit that first built the artifact's digest. They differ when a later commit builds the same bytes
    (it changed only slipway.yml, say): the release is that later commit's, its files are the artifact's.
    """

    commit: str
    artifact_commit: str

    def to_json(self, release_id: str, digest: str) -> bytes:
        """The marker file's bytes."""
        data = {"release": release_id, "digest": digest, "commit": self.commit, "artifact_commit": self.artifact_commit}
        return json.dumps(data, sort_keys=True).encode()


def link_tar(manifest: Manifest, release_id: str, shared: Sequence[str], *, marker: Marker | None = None) -> bytes:
    """A tar of hard links (no file data), symlinks and the marker that builds the release tree.

    Every link is checked here, whatever produced the manifest: an absolute link or one climbing out of
    the release is refused before anything reaches the host.
    """
    base = f"releases/{release_id}.partial"
    shared_set = [check_member_path(s) for s in shared]

    def under_shared(path: str) -> bool:
        return _under(path, shared_set)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo(base)
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        for d in manifest.directories():
            if under_shared(d):
                continue
            info = tarfile.TarInfo(f"{base}/{d}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for f in manifest.files:
            if under_shared(f.path):
                continue
            info = tarfile.TarInfo(f"{base}/{check_member_path(f.path)}")
            info.type, info.linkname = tarfile.LNKTYPE, f"{OBJECTS}/{f.object_name}"
            tar.addfile(info)
        for link in manifest.links:
            if under_shared(link.path):
                continue
            check_link_target(check_member_path(link.path), link.target)
            info = tarfile.TarInfo(f"{base}/{check_member_path(link.path)}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, link.target, 0o777
            tar.addfile(info)
        for s in shared_set:
            parent = PurePosixPath(s).parent
            if str(parent) != ".":
                info = tarfile.TarInfo(f"{base}/{parent}")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            info = tarfile.TarInfo(f"{base}/{s}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, shared_link_target(s), 0o777
            tar.addfile(info)
        mark = (marker or Marker(manifest.commit, manifest.commit)).to_json(release_id, manifest.digest)
        info = tarfile.TarInfo(f"{base}/{MARKER}")
        info.size, info.mode = len(mark), 0o444
        tar.addfile(info, io.BytesIO(mark))
    return buf.getvalue()


def _build_script(target: Target, manifest: Manifest, release_id: str, shared: Sequence[str]) -> str:
    """Unpack the link tar from stdin into ``<id>.partial``, count it, and rename it when complete."""
    final = release_dir(target, release_id)
    partial = final + ".partial"
    expected = 1 + sum(1 for f in manifest.files if not _under(f.path, shared))
    return (
        f"cd {quote(target.root)} && rm -rf {quote(partial)} && tar -x --no-same-owner -f - && "
        f'n=$(find {quote(partial)} -type f | wc -l) && if [ "$n" -ne {expected} ]; then '
        f'echo "release incomplete: $n of {expected} files" >&2; rm -rf {quote(partial)}; exit 3; fi && '
        f"mv -T {quote(partial)} {quote(final)}"
    )


async def build_release(
    target: Target,
    manifest: Manifest,
    release_id: str,
    shared: Sequence[str],
    *,
    timeout: float,
    marker: Marker | None = None,
) -> None:
    """Build ``releases/<id>`` from the object store; it appears only once complete."""
    links = link_tar(manifest, release_id, shared, marker=marker)  # refuses an unsafe link before the host
    script = _build_script(target, manifest, release_id, shared)
    result = await target.run(script, stdin=links, timeout=timeout, contained=True)
    if not result.ok:
        await _remove(target, release_dir(target, release_id) + ".partial", timeout=timeout)
        raise CommandFailed.from_result(result, what="building the release directory failed")


@dataclass(frozen=True)
class HostLook:
    """What one look at a host found before an install: what ``current`` points at, and what the release lacks."""

    #: The release ``current`` points at; None when nothing was activated yet.
    current: str | None
    #: The object names the host lacks; None when the release (of this artifact) is complete there.
    missing: frozenset[str] | None


async def look_before_install(
    target: Target, manifest: Manifest, release_id: str, *, shared: Sequence[str] = (), timeout: float = 600
) -> HostLook:
    """One round trip: create the layout, read ``current``, and ask what the release lacks on the host.

    The host compares the wanted object names (stdin) against one listing of its store with ``awk``: a
    shell ``while read`` loop reads a pipe one byte at a time, which cost more CPU than sending the 1% of
    a release that changed.
    """
    validate_release_id(release_id)
    dirs = ["releases", "shared", OBJECTS, TMP, *[f"shared/{check_member_path(s)}" for s in shared]]
    path = f"{release_dir(target, release_id)}/{MARKER}"
    wanted = quote(json.dumps({"digest": manifest.digest})[1:-1])
    names = sorted({f.object_name for f in manifest.files if not _under(f.path, shared)})
    script = (
        f"mkdir -p -- {' '.join(quote(f'{target.root}/{d}') for d in dirs)} || exit 1\n"
        f"printf 'current %s\\n' \"$(readlink {quote(target.root + '/current')})\"\n"
        f"if test -f {quote(path)} && grep -qF {wanted} {quote(path)}; then echo {_INSTALLED}; exit 0; fi\n"
        # Names are hex digests and a mode: no blank or special character. "ls -a" always lists "." and
        # "..", so its output is never empty and NR == FNR holds only while awk reads it.
        f"cd {quote(target.root + '/' + OBJECTS + '/')} || exit 1\n"
        "exec 3<&0\n"
        "ls -a | awk 'NR == FNR { have[$0] = 1; next } !($0 in have) { print \"missing \" $0 }' - /dev/fd/3"
    )
    result = _check(
        await target.run(script, stdin=("\n".join(names) + "\n").encode(), timeout=timeout, contained=True),
        "cannot prepare the deploy directories",
    )
    current: str | None = None
    missing: set[str] = set()
    installed = False
    for line in result.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "current":
            current = PurePosixPath(rest.strip()).name or None
        elif word == "missing" and rest.strip():
            missing.add(rest.strip())
        elif line.strip() == _INSTALLED:
            installed = True
    return HostLook(current, None if installed else frozenset(missing))


async def install_release(
    target: Target,
    manifest: Manifest,
    release_id: str,
    objects: ObjectCache | ObjectSource,
    *,
    shared: Sequence[str] = (),
    timeout: float = 600,
    marker: Marker | None = None,
    looked: HostLook | None = None,
) -> InstallStats:
    """Make ``releases/<id>`` exist and complete on the target, sending only missing contents.

    Two round trips: :func:`look_before_install` (skipped when ``looked`` is what it found, moments
    ago, in the same deployment), then one that sends the missing contents and the release's links and
    builds it.
    """
    validate_release_id(release_id)
    cache = objects if isinstance(objects, ObjectCache) else ObjectCache(manifest, objects)
    links = cache.links(release_id, shared, marker)  # an unsafe link is refused before the host
    look = looked or await look_before_install(target, manifest, release_id, shared=shared, timeout=timeout)
    if look.missing is None:
        return InstallStats(0, 0, already_installed=True)
    count, sent = await _send(target, manifest, release_id, shared, look.missing, cache, links, timeout=timeout)
    return InstallStats(count, sent, already_installed=False)


async def _send(
    target: Target,
    manifest: Manifest,
    release_id: str,
    shared: Sequence[str],
    missing: frozenset[str],
    objects: ObjectCache,
    links: bytes,
    *,
    timeout: float,
) -> tuple[int, int]:
    """Upload the missing contents and build the release from its links, in one command."""
    payload, sent = await objects.payload(missing, links)
    incoming = f"{target.root}/{TMP}/{release_id}.objects"
    size = len(payload) - len(links)
    upload = f"{_take(size)} | ( {_upload_script(incoming, f'{target.root}/{OBJECTS}', len(missing))} )"
    script = (f"{upload} || exit {_UPLOAD_FAILED}\n" if missing else "") + _build_script(
        target, manifest, release_id, shared
    )
    result = await target.run(script, stdin=payload, timeout=timeout, contained=True)
    if result.ok:
        return len(missing), sent
    if missing and result.exit_code == _UPLOAD_FAILED:
        await _remove(target, incoming, timeout=timeout)
        raise CommandFailed.from_result(result, what=await _upload_failure(target, sent, timeout=timeout))
    await _remove(target, release_dir(target, release_id) + ".partial", timeout=timeout)
    raise CommandFailed.from_result(result, what="building the release directory failed")


async def current_release(target: Target, *, timeout: float = 60) -> str | None:
    """The release id ``current`` points at, or None when nothing was activated yet."""
    result = await target.run(f"readlink {quote(target.root + '/current')} || true", timeout=timeout, contained=True)
    link = result.stdout.strip()
    return PurePosixPath(link).name if link else None


@dataclass(frozen=True)
class HostReleases:
    """What ``current`` points at on a host, and whether a given release is complete there."""

    current: str | None
    has_release: bool


async def inspect_releases(target: Target, release_id: str, *, timeout: float = 60) -> HostReleases:
    """``current`` and the presence of ``release_id``, in one round trip (a rollback's only look)."""
    marker = f"{release_dir(target, validate_release_id(release_id))}/{MARKER}"
    script = f"readlink {quote(target.root + '/current')} || true; if test -f {quote(marker)}; then echo present; fi"
    lines = (await target.run(script, timeout=timeout, contained=True)).stdout.splitlines()
    present = bool(lines) and lines[-1] == "present"
    link = (lines[:-1] if present else lines)[:1]
    return HostReleases(PurePosixPath(link[0].strip()).name if link and link[0].strip() else None, present)


async def switch_current(target: Target, release_id: str, *, timeout: float = 60) -> None:
    """Point ``current`` at a complete release: new link, then an atomic rename over the old one."""
    validate_release_id(release_id)
    root = quote(target.root)
    marker = quote(f"releases/{release_id}/{MARKER}")
    script = (
        f"cd {root} && test -f {marker} || {{ echo 'release {release_id} is not complete on this host' >&2; exit 3; }}; "
        f"ln -sfn {quote('releases/' + release_id)} current.tmp && mv -Tf current.tmp current"
    )
    _check(await target.run(script, timeout=timeout, contained=True), f"cannot switch current to {release_id}")


async def prune_releases(target: Target, keep: int, protect: Sequence[str], *, timeout: float = 120) -> list[str]:
    """Remove the oldest releases beyond ``keep`` (never a protected one) and unreferenced objects.

    One round trip: the host lists its releases in byte order (as ids sort), removes the oldest beyond
    ``keep`` that are not protected, prints each one it removed, then drops the objects nothing links to.
    """
    spared = " ".join(validate_release_id(r) for r in protect)
    script = (
        f"cd {quote(target.root + '/releases')} || exit 1\n"
        "set -- $(ls -1 | grep -v '[.]partial$' | LC_ALL=C sort)\n"
        f"drop=$(($# - {int(keep)})); failed=0\n"
        'for r in "$@"; do\n'
        '  [ "$drop" -gt 0 ] || break\n'
        "  drop=$((drop - 1))\n"
        f'  case " {spared} " in *" $r "*) continue ;; esac\n'
        '  if rm -rf -- "$r"; then echo "$r"; else failed=1; fi\n'
        "done\n"
        # An object no release links to has a link count of 1: nothing needs it any more. The trailing
        # slash: the store may be a symlink to one shared by several layouts (blue/green slots).
        f"find {quote(target.root + '/' + OBJECTS + '/')} -type f -links 1 -delete\n"
        'exit "$failed"'
    )
    result = await target.run(script, timeout=timeout, contained=True)
    # Checked: the caller reports these as removed (a deployment warns when pruning fails).
    _check(result, "cannot remove old releases")
    return result.stdout.split()

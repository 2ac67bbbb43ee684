"""Publish and fetch model files through the Hugging Face Hub — or a directory.

Where the hub is, first match wins: ``--hub-dir DIR``, ``$DEITCTL_HUB_DIR``, ``HF_ENDPOINT=file:///DIR``
(a directory hub, see :mod:`deitctl.hub.directory` for its layout), else ``HF_ENDPOINT`` (default
https://huggingface.co) spoken to with ``huggingface_hub``. The token is the client's own
(``HF_TOKEN`` or ``hf auth login``); deitctl never reads, prints or logs it.

push: one commit of the files given (``deitctl.app.hub`` decides which: weights, config, model card).
Re-pushing identical files makes no new commit.

pull: only ``config.json``, ``model.safetensors`` and ``README.md`` are downloaded — never code —
pinned to the commit the revision resolves to. Each file is checked against the checksum the hub
reports (the LFS sha256 for weights, the git blob id otherwise), and the caller's ``check`` (which
rebuilds the model from its config) must accept the files. Downloads go to a temporary directory that is renamed into
the cache only after every check passed:

    $DEITCTL_CACHE (default $HF_HOME/deitctl)/<hub>/<org>--<name>/<commit>/   verified files
                                                   /<org>--<name>/refs/<rev>   last commit seen

With ``HF_HUB_OFFLINE=1``, or when the hub cannot be reached, a revision pulled before is served
from the cache.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from deitctl.core.atomic import atomic_dir, write_text
from deitctl.core.console import log
from deitctl.core.errors import DeitctlError, UsageError
from deitctl.hub.types import (
    COMMIT,
    DEFAULT_BRANCH,
    OPTIONAL,
    REQUIRED,
    CommitResult,
    HubUnreachable,
    PullResult,
    Remote,
    Snapshot,
    file_sha256,
    git_blob_id,
    parse_repo,
)

Check = Callable[[Path], None]


def remote_for(hub_dir: Path | None = None) -> Remote:
    """The hub to talk to (see the module docstring for the order)."""
    endpoint = os.environ.get("HF_ENDPOINT", "")
    directory = hub_dir or os.environ.get("DEITCTL_HUB_DIR") or (endpoint[7:] if endpoint.startswith("file://") else None)
    if directory:
        from deitctl.hub.directory import DirRemote

        return DirRemote(Path(directory))
    from deitctl.hub.http import HttpRemote

    return HttpRemote(endpoint or None)


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("DEITCTL_CACHE") or Path(os.environ.get("HF_HOME") or constants.HF_HOME) / "deitctl")


# ----------------------------------------------------------------------------------------- pull
def pull(ref: str, check: Check, out: Path | None = None, hub_dir: Path | None = None,
         overwrite: bool = False) -> PullResult:
    """Resolve, download, verify and cache a repo revision; copy it to ``out`` when given.

    ``check(directory)`` must accept the downloaded files before they enter the cache; a DeitctlError it
    raises is reported with the repo's name in place of the temporary directory's.
    """
    repo_id, revision = parse_repo(ref)
    if out is not None and out.exists() and not overwrite:
        raise UsageError(f"{out} already exists; choose another --out or pass --overwrite")
    remote = remote_for(hub_dir)
    repo_cache = cache_root() / remote.cache_key / repo_id.replace("/", "--")
    snapshot = _snapshot_or_cached(remote, repo_cache, repo_id, revision)
    if isinstance(snapshot, Path):
        local, from_cache, commit = snapshot, True, snapshot.name
    else:
        local, from_cache, commit = repo_cache / snapshot.commit, (repo_cache / snapshot.commit).is_dir(), snapshot.commit
        if not from_cache:
            _download_verified(remote, snapshot, local, check)
        write_text(repo_cache / "refs" / (revision or DEFAULT_BRANCH).replace("/", "--"), commit + "\n")
    if out is not None:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for f in local.iterdir():
                shutil.copyfile(f, tmp / f.name)
        local = out
    files = sorted(p.name for p in local.iterdir())
    return PullResult(repo_id, revision or DEFAULT_BRANCH, commit, str(local), file_sha256(local / REQUIRED[1]),
                      files, from_cache)


def _snapshot_or_cached(remote: Remote, repo_cache: Path, repo_id: str, revision: str | None) -> Snapshot | Path:
    """Ask the hub what the revision is now; offline or unreachable, fall back to the last pull of it."""
    from deitctl.hub.reach import offline_requested, online

    ref_file = repo_cache / "refs" / (revision or DEFAULT_BRANCH).replace("/", "--")
    cached = repo_cache / ref_file.read_text().strip() if ref_file.is_file() else None
    if revision and COMMIT.match(revision) and (repo_cache / revision).is_dir():
        cached = repo_cache / revision  # a commit id pulled before: immutable, no need to ask
    cached = cached if cached is not None and cached.is_dir() else None
    if cached is not None and cached.name == revision:
        return cached
    if remote.needs_network and not online():
        if cached is not None:
            _say_once(f"hub offline; using {repo_id}@{cached.name[:12]} pulled before")
            return cached
        requested = offline_requested()
        why = "HF_HUB_OFFLINE is set" if requested else f"cannot reach the hub at {remote.where}"
        raise HubUnreachable(f"{why} and {repo_id}@{revision or DEFAULT_BRANCH} was never pulled; pull it where the "
                             "hub is reachable (same HF_HOME)" + (", or unset HF_HUB_OFFLINE" if requested else ""))
    try:
        return remote.snapshot(repo_id, revision)
    except HubUnreachable:
        if cached is not None:
            _say_once(f"hub unreachable; using {repo_id}@{cached.name[:12]} pulled before")
            return cached
        raise


@functools.cache
def _say_once(message: str) -> None:
    """One command may pull a reference several times (checked early, then loaded): the fallback is said once."""
    log(message)


def _download_verified(remote: Remote, snapshot: Snapshot, final: Path, check: Check) -> None:
    """Fetch the allowed files into a temp dir, check checksums and config-vs-weights, then rename."""
    from deitctl.core.console import progress

    missing = [name for name in REQUIRED if name not in snapshot.files]
    if missing:
        raise UsageError(f"{snapshot.repo_id}@{snapshot.revision} is not a deitctl/timm model repo: no {missing[0]}; "
                         "push one with `deitctl push`")
    names = [*REQUIRED, *(n for n in OPTIONAL if n in snapshot.files)]
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final, overwrite=True) as tmp, progress(unit="B") as bar:
        task = bar.add_task(f"pull {snapshot.repo_id}", total=sum(snapshot.files[n].size or 0 for n in names), info="")
        for name in names:
            bar.update(task, info=name)
            remote.fetch(snapshot, name, tmp / name)
            _verify(snapshot, name, tmp / name)
            bar.update(task, advance=snapshot.files[name].size or 0)
        name = f"{snapshot.repo_id}@{snapshot.commit[:12]}"
        try:
            check(tmp)
        except DeitctlError as e:
            raise type(e)(str(e).replace(str(tmp), name) + "; nothing was kept") from None


def _verify(snapshot: Snapshot, name: str, path: Path) -> None:
    info = snapshot.files[name]
    where = f"{snapshot.repo_id}@{snapshot.commit[:12]}"
    if info.sha256:
        actual, expected, kind = file_sha256(path), info.sha256, "sha256"
    elif info.blob_id:
        actual, expected, kind = git_blob_id(path), info.blob_id, "git blob id"
    elif name in REQUIRED[1:]:
        raise DeitctlError(f"{where}: the hub reports no checksum for {name}; refusing unverifiable weights")
    else:
        return
    if actual != expected:
        raise DeitctlError(f"{where}: {name} is corrupt ({kind} {actual[:16]}… but the hub says {expected[:16]}…); "
                           "nothing was kept — pull again, and report it to the repo owner if it persists")


# ----------------------------------------------------------------------------------------- push
def connect(hub_dir: Path | None = None) -> Remote:
    """The hub to push to, refused at once when it is a network hub that does not answer (or HF_HUB_OFFLINE)."""
    from deitctl.hub.reach import online

    remote = remote_for(hub_dir)
    if remote.needs_network and not online():
        raise HubUnreachable(f"cannot reach the hub at {remote.where} (offline, or HF_HUB_OFFLINE is set); "
                             "push where it is reachable, or use a directory hub with --hub-dir")
    return remote


def push(remote: Remote, repo_id: str, files: dict[str, Path], message: str, revision: str | None = None,
         private: bool = False) -> CommitResult:
    """One commit of ``files`` (name in the repo → local path) to ``repo_id`` on the branch ``revision``."""
    log(f"pushing {', '.join(files)} to {repo_id}@{revision or DEFAULT_BRANCH} ({remote.where})")
    return remote.commit(repo_id, files, message, revision, private)


def push_space(remote: Remote, space_id: str, files: dict[str, Path], message: str, private: bool = False,
               sdk: str = "gradio") -> CommitResult:
    """One commit of ``files`` to the Space ``space_id`` (created with ``sdk`` if new), on its main branch."""
    if not remote.hosts_spaces:
        raise UsageError(f"{remote.where} cannot run a Space; push the demo to a Hub (HF_ENDPOINT)")
    log(f"pushing {', '.join(files)} to the Space {space_id} ({remote.where})")
    return remote.commit(space_id, files, message, None, private, space_sdk=sdk)  # type: ignore[call-arg]

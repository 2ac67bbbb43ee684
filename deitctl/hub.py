"""``deitctl push`` / ``deitctl pull``: publish and fetch models through the Hugging Face Hub — or a directory.

Where the hub is, first match wins: ``--hub-dir DIR``, ``$DEITCTL_HUB_DIR``, ``HF_ENDPOINT=file:///DIR``
(a directory hub, see :mod:`deitctl.hub_dir` for its layout), else ``HF_ENDPOINT`` (default
https://huggingface.co) spoken to with ``huggingface_hub``. The token is the client's own
(``HF_TOKEN`` or ``hf auth login``); deitctl never reads, prints or logs it.

push: one commit holding ``config.json``, ``model.safetensors``, a generated ``README.md`` model card
(:mod:`deitctl.modelcard`) and ``curves.png`` when the run has one. The model is loaded first, so
something that is not a model, or whose config does not fit its weights, is refused before anything
is sent. Re-pushing identical files makes no new commit.

pull: only ``config.json``, ``model.safetensors`` and ``README.md`` are downloaded — never code —
pinned to the commit the revision resolves to. Each file is checked against the checksum the hub
reports (the LFS sha256 for weights, the git blob id otherwise), and the model is rebuilt from its
config to check the weights fit it. Downloads go to a temporary directory that is renamed into
the cache only after every check passed:

    $DEITCTL_CACHE (default $HF_HOME/deitctl)/<hub>/<org>--<name>/<commit>/   verified files
                                                   /<org>--<name>/refs/<rev>   last commit seen

With ``HF_HUB_OFFLINE=1``, or when the hub cannot be reached, a revision pulled before is served
from the cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deitctl.atomic import atomic_dir, write_text
from deitctl.console import log
from deitctl.errors import DeitctlError, UsageError

DEFAULT_BRANCH = "main"
REQUIRED = ("config.json", "model.safetensors")
OPTIONAL = ("README.md",)
_REPO_ID = re.compile(r"^(?!.*\.\.)[\w][\w.-]*/[\w][\w.-]*$")
_REVISION = re.compile(r"^(?!.*\.\.)[\w][\w./-]*$")  # branch, tag or commit; never a path out of the cache
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class FileInfo:
    size: int | None
    sha256: str | None = None  # what the hub vouches for: LFS sha256 ...
    blob_id: str | None = None  # ... or the git blob id of a regular file


@dataclass
class Snapshot:
    repo_id: str
    revision: str
    commit: str
    files: dict[str, FileInfo]


@dataclass
class CommitResult:
    commit: str
    url: str
    changed: bool = True


@dataclass
class PullResult:
    repo_id: str
    revision: str
    commit: str
    path: str
    sha256: str
    files: list[str] = field(default_factory=list)
    from_cache: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Remote(Protocol):
    where: str  # for messages
    cache_key: str  # the pull cache is kept per hub
    needs_network: bool

    def snapshot(self, repo_id: str, revision: str | None) -> Snapshot: ...
    def fetch(self, snapshot: Snapshot, name: str, dest: Path) -> None: ...
    def commit(self, repo_id: str, files: dict[str, Path], message: str, revision: str | None, private: bool) -> CommitResult: ...


# ----------------------------------------------------------------------------------- utilities
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """git's object id of a file (what the Hub reports for non-LFS files)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def parse_repo(ref: str) -> tuple[str, str | None]:
    """``org/name[@revision]`` → (repo id, revision or None), refusing anything that is not one."""
    repo_id, _, revision = ref.partition("@")
    if not _REPO_ID.match(repo_id) or (ref.endswith("@")) or (revision and not _REVISION.match(revision)):
        raise UsageError(f"'{ref}' is not a repo id; write it as org/name or org/name@revision")
    return repo_id, revision or None


def remote_for(hub_dir: Path | None = None) -> Remote:
    """The hub to talk to (see the module docstring for the order)."""
    endpoint = os.environ.get("HF_ENDPOINT", "")
    directory = hub_dir or os.environ.get("DEITCTL_HUB_DIR") or (endpoint[7:] if endpoint.startswith("file://") else None)
    if directory:
        from deitctl.hub_dir import DirRemote

        return DirRemote(Path(directory))
    from deitctl.hub_http import HttpRemote

    return HttpRemote(endpoint or None)


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(os.environ.get("DEITCTL_CACHE") or Path(os.environ.get("HF_HOME") or constants.HF_HOME) / "deitctl")


# ----------------------------------------------------------------------------------------- pull
def pull(ref: str, out: Path | None = None, hub_dir: Path | None = None) -> Path:
    """Download ``org/name[@rev]`` (verified) and return its local model directory."""
    return Path(pull_model(ref, out, hub_dir).path)


def pull_model(ref: str, out: Path | None = None, hub_dir: Path | None = None, overwrite: bool = False) -> PullResult:
    """Resolve, download, verify and cache a repo revision; copy it to ``out`` when given."""
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
            _download_verified(remote, snapshot, local)
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
    from huggingface_hub import constants

    ref_file = repo_cache / "refs" / (revision or DEFAULT_BRANCH).replace("/", "--")
    cached = repo_cache / ref_file.read_text().strip() if ref_file.is_file() else None
    if revision and _COMMIT.match(revision) and (repo_cache / revision).is_dir():
        cached = repo_cache / revision  # a commit id pulled before: immutable, no need to ask
    offline = constants.is_offline_mode() and remote.needs_network
    if cached is not None and cached.is_dir() and (offline or cached.name == revision):
        return cached
    if constants.is_offline_mode() and remote.needs_network:
        raise DeitctlError(f"HF_HUB_OFFLINE is set and {repo_id}@{revision or DEFAULT_BRANCH} was never pulled; "
                           "unset HF_HUB_OFFLINE, or pull it where the hub is reachable")
    try:
        return remote.snapshot(repo_id, revision)
    except HubUnreachable:
        if cached is not None and cached.is_dir():
            log(f"hub unreachable; using {repo_id}@{cached.name[:12]} pulled before")
            return cached
        raise


def _download_verified(remote: Remote, snapshot: Snapshot, final: Path) -> None:
    """Fetch the allowed files into a temp dir, check checksums and config-vs-weights, then rename."""
    from deitctl.console import progress

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
        _check_loads(tmp, f"{snapshot.repo_id}@{snapshot.commit[:12]}")


def _check_loads(path: Path, name: str) -> None:
    """Rebuild the model from its config: a repo whose weights do not fit it is refused, naming the tensor."""
    from safetensors import SafetensorError

    from deitctl.modelref import load_model_dir

    try:
        load_model_dir(path)
    except DeitctlError as e:
        raise type(e)(str(e).replace(str(path), name) + "; nothing was kept") from None
    except SafetensorError as e:
        raise DeitctlError(f"{name}: model.safetensors is not a readable safetensors file ({e}); nothing was kept") from None


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


class HubUnreachable(DeitctlError):
    """No answer from the hub at all (as opposed to an answer we do not like)."""


# ----------------------------------------------------------------------------------------- push
def push_model(
    source: Path,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
    hub_dir: Path | None = None,
) -> dict[str, Any]:
    """Publish a run or model directory as one commit: weights, config, model card (+ curves.png)."""
    from deitctl.modelcard import build_card
    from deitctl.modelref import CONFIG, WEIGHTS, is_model_dir, load_model_dir

    repo_id, at = parse_repo(repo_id)
    if at:
        raise UsageError(f"write the branch as --revision {at}, not {repo_id}@{at}")
    if revision and not _REVISION.match(revision):
        raise UsageError(f"--revision '{revision}' is not a branch name (letters, digits, . _ - /)")
    if not is_model_dir(source):
        raise UsageError(f"{source}: not a model or run directory (needs {CONFIG} and {WEIGHTS}); nothing was pushed")
    loaded = load_model_dir(source)  # refuses a config that does not fit the weights, before any upload
    card = build_card(source, repo_id, loaded)
    remote = remote_for(hub_dir)
    with tempfile.TemporaryDirectory(prefix="deitctl-card-") as tmp:
        readme = Path(tmp) / "README.md"
        readme.write_text(card)
        files = {CONFIG: source / CONFIG, WEIGHTS: source / WEIGHTS, "README.md": readme}
        if (source / "curves.png").is_file():
            files["curves.png"] = source / "curves.png"
        log(f"pushing {', '.join(files)} to {repo_id}@{revision or DEFAULT_BRANCH} ({remote.where})")
        result = remote.commit(repo_id, files, message or f"Upload {loaded.arch} with deitctl", revision, private)
    return {"repo_id": repo_id, "revision": revision or DEFAULT_BRANCH, "commit": result.commit, "url": result.url,
            "changed": result.changed, "files": sorted(files), "sha256": file_sha256(source / WEIGHTS)}

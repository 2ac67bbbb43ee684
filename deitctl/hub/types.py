"""What a hub holds and answers, independent of how it is reached (HTTP or a directory)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deitctl.core.errors import DeitctlError, UsageError

DEFAULT_BRANCH = "main"
REQUIRED = ("config.json", "model.safetensors")  # a model repo has these; pull fetches nothing but them …
OPTIONAL = ("README.md",)  # … and the model card
_REPO_ID = re.compile(r"^(?!.*\.\.)[\w][\w.-]*/[\w][\w.-]*$")
REVISION = re.compile(r"^(?!.*\.\.)[\w][\w./-]*$")  # branch, tag or commit; never a path out of the cache
COMMIT = re.compile(r"^[0-9a-f]{40}$")


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
    hosts_spaces: bool  # can run a Space (push --demo): the Hub can, a directory cannot

    def snapshot(self, repo_id: str, revision: str | None) -> Snapshot: ...
    def fetch(self, snapshot: Snapshot, name: str, dest: Path) -> None: ...
    def commit(self, repo_id: str, files: dict[str, Path], message: str, revision: str | None, private: bool) -> CommitResult: ...


class HubUnreachable(DeitctlError):
    """No answer from the hub at all (as opposed to an answer we do not like)."""


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
    if not _REPO_ID.match(repo_id) or (ref.endswith("@")) or (revision and not REVISION.match(revision)):
        raise UsageError(f"'{ref}' is not a repo id; write it as org/name or org/name@revision")
    return repo_id, revision or None


def is_repo_id(ref: str) -> bool:
    """``org/name[@revision]`` in form (whether such a repo exists is the hub's to say)."""
    try:
        parse_repo(ref)
    except UsageError:
        return False
    return True

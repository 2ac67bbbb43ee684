"""A plain directory that acts as the Hub, for air-gapped teams (``--hub-dir``, ``DEITCTL_HUB_DIR``,
or ``HF_ENDPOINT=file:///path``). Share it over NFS, a USB disk or rsync; nothing else is needed.

Layout (every file is plain, so ``ls`` and ``sha256sum`` are enough to audit it)::

    HUB_DIR/
      org/name/
        repo.json                    {"private": false}
        refs/main                    one line: the commit id the branch points at
        refs/<branch>                (push --revision BRANCH)
        commits/<commit-id>/         the complete repo at that commit, never modified once written
          manifest.json              {"parent": id | null, "message": str,
                                      "files": {"model.safetensors": {"sha256": hex, "size": n}, ...}}
          config.json
          model.safetensors
          README.md

A commit id is the sha1 of its canonical manifest (40 hex digits, like git's), so the same content
on the same parent always gets the same id. A commit directory is written under a temporary name and
renamed into place, and only then does the ref move (itself an atomic rename): a reader never sees a
half-written commit. A push whose files equal the parent's creates no commit. Concurrent pushes to
one branch are serialised by a lock per branch (``refs/.<branch>.lock``, flock: NFS v4 and local disks)
and the ref moves by compare-and-swap: each push lands as its own commit on top of the one before, or
fails with a message saying to retry; none is lost.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from deitctl.core.atomic import atomic_dir, write_text
from deitctl.core.errors import DeitctlError, UsageError
from deitctl.core.lock import FileLock, InUseError
from deitctl.hub.types import DEFAULT_BRANCH, CommitResult, FileInfo, Snapshot, file_sha256

MANIFEST = "manifest.json"
LOCK_WAIT_S = 60.0  # a push waits this long for another push to the same branch


class DirRemote:
    """The same operations as the HTTP hub (snapshot, fetch, commit) on a directory tree."""

    needs_network = False
    hosts_spaces = False  # files only: a Space needs the Hub to run it

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.where = f"hub directory {self.root}"
        self.cache_key = "dir-" + hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        if not self.root.is_dir():
            raise UsageError(f"{self.root}: hub directory not found; create it (mkdir -p) or fix --hub-dir")

    # ------------------------------------------------------------------------------------ reading
    def _repo(self, repo_id: str) -> Path:
        path = self.root / repo_id
        if not (path / "refs").is_dir():
            raise UsageError(f"{repo_id}: no such model repo in {self.where}; check the name (org/name)")
        return path

    def _resolve(self, repo: Path, repo_id: str, revision: str) -> str:
        ref = repo / "refs" / revision
        if "/" not in revision and ref.is_file():
            return ref.read_text().strip()
        commits = repo / "commits"
        matches = [p.name for p in commits.iterdir() if p.name.startswith(revision)] if len(revision) >= 7 else []
        if len(matches) == 1:
            return matches[0]
        raise UsageError(f"{repo_id}: no revision '{revision}' in {self.where}; "
                         f"branches: {', '.join(sorted(p.name for p in (repo / 'refs').iterdir()))}")

    def snapshot(self, repo_id: str, revision: str | None) -> Snapshot:
        repo = self._repo(repo_id)
        commit = self._resolve(repo, repo_id, revision or DEFAULT_BRANCH)
        manifest = self._manifest(repo, commit)
        files = {name: FileInfo(meta["size"], meta["sha256"]) for name, meta in manifest["files"].items()}
        return Snapshot(repo_id, revision or DEFAULT_BRANCH, commit, files)

    def _manifest(self, repo: Path, commit: str) -> dict:
        try:
            return json.loads((repo / "commits" / commit / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DeitctlError(f"{self.where}: commit {commit} of {repo.name} is damaged ({e}); push it again") from None

    def fetch(self, snapshot: Snapshot, name: str, dest: Path) -> None:
        src = self.root / snapshot.repo_id / "commits" / snapshot.commit / name
        if not src.is_file():
            raise DeitctlError(f"{snapshot.repo_id}@{snapshot.commit[:12]}: {name} is listed but missing from {self.where}")
        shutil.copyfile(src, dest)

    # ------------------------------------------------------------------------------------ writing
    def commit(
        self, repo_id: str, files: dict[str, Path], message: str, revision: str | None, private: bool
    ) -> CommitResult:
        branch = revision or DEFAULT_BRANCH
        if "/" in branch:
            raise UsageError(f"--revision '{branch}': a directory hub keeps flat branch names (no '/')")
        lock = FileLock(self.root / repo_id / "refs" / f".{branch}.lock", "deitctl push", f"{repo_id}@{branch}")
        try:
            lock.acquire(timeout=LOCK_WAIT_S)
        except InUseError as e:
            raise DeitctlError(f"{e} — another push to it took longer than {LOCK_WAIT_S:.0f} s; retry the push") from None
        try:
            return self._commit_locked(repo_id, branch, files, message, private)
        finally:
            lock.release()

    def _commit_locked(self, repo_id: str, branch: str, files: dict[str, Path], message: str,
                       private: bool) -> CommitResult:
        repo = self.root / repo_id
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "commits").mkdir(exist_ok=True)
        if not (repo / "repo.json").is_file():
            write_text(repo / "repo.json", json.dumps({"private": private}) + "\n")
        ref = repo / "refs" / branch
        expected = parent = _read_ref(ref)
        if parent is None and branch != DEFAULT_BRANCH and (repo / "refs" / DEFAULT_BRANCH).is_file():
            parent = (repo / "refs" / DEFAULT_BRANCH).read_text().strip()  # a new branch starts from main
        entries = {name: {"sha256": file_sha256(path), "size": path.stat().st_size} for name, path in sorted(files.items())}
        if parent is not None:
            old = self._manifest(repo, parent)["files"]
            if {**old, **entries} == old:  # nothing new: no empty commit
                write_text(ref, parent + "\n")
                return CommitResult(parent, self._url(repo_id, parent), changed=False)
            entries = {**old, **entries}  # like a Hub commit: files not pushed stay in the repo
        manifest = {"parent": parent, "message": message, "files": entries}
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        commit = hashlib.sha1(text.encode()).hexdigest()
        final = repo / "commits" / commit
        if not final.exists():
            with atomic_dir(final) as tmp:
                for name in entries:
                    source = files.get(name) or (repo / "commits" / str(parent) / name)
                    shutil.copyfile(source, tmp / name)
                (tmp / MANIFEST).write_text(text)
        now = _read_ref(ref)
        if now != expected:  # compare-and-swap of the branch ref
            raise DeitctlError(f"{repo_id}@{branch} moved to {now} during the push (a writer without the lock, e.g. "
                               "an NFS client without flock); nothing was lost — retry the push")
        write_text(ref, commit + "\n", durable=True)
        return CommitResult(commit, self._url(repo_id, commit), changed=True)

    def _url(self, repo_id: str, commit: str) -> str:
        return (self.root / repo_id / "commits" / commit).resolve().as_uri()


def _read_ref(ref: Path) -> str | None:
    return ref.read_text().strip() if ref.is_file() else None

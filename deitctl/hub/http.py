"""The Hugging Face Hub (or any server speaking its API) through ``huggingface_hub`` — the only HTTP client.

Every hub call runs inside :func:`hub_errors`, which turns the client's exceptions into one line that
names the problem and the fix (repo or revision not found, auth refused, hub unreachable). The token
is left to the client (``HF_TOKEN`` / ``hf auth login``) and never passed through our messages.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from deitctl.core.errors import DeitctlError, UsageError
from deitctl.hub.types import DEFAULT_BRANCH, CommitResult, FileInfo, HubUnreachable, Snapshot

_TRANSPORT_MODULES = ("httpx", "httpx2", "requests", "urllib3", "h11", "httpcore")


class HttpRemote:
    needs_network = True
    hosts_spaces = True  # a Space (push --demo) runs on the Hub

    def __init__(self, endpoint: str | None = None) -> None:
        from huggingface_hub import HfApi, constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.where = self.endpoint
        host = self.endpoint.split("://", 1)[-1]
        self.cache_key = "".join(c if c.isalnum() or c in ".-" else "_" for c in host)
        self.api = HfApi(endpoint=self.endpoint, library_name="deitctl")

    def snapshot(self, repo_id: str, revision: str | None) -> Snapshot:
        with hub_errors(self.where, repo_id, revision):
            info = self.api.model_info(repo_id, revision=revision, files_metadata=True)
        files = {
            s.rfilename: FileInfo(s.size, s.lfs.sha256 if s.lfs else None, s.blob_id) for s in info.siblings or []
        }
        return Snapshot(repo_id, revision or DEFAULT_BRANCH, str(info.sha), files)

    def fetch(self, snapshot: Snapshot, name: str, dest: Path) -> None:
        """Download one file of the pinned commit straight into ``dest``'s directory."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        was_disabled = are_progress_bars_disabled()
        disable_progress_bars()  # our own rich bar reports the pull
        try:
            with hub_errors(self.where, snapshot.repo_id, snapshot.commit, name):
                got = hf_hub_download(snapshot.repo_id, name, revision=snapshot.commit, local_dir=dest.parent,
                                      endpoint=self.endpoint, library_name="deitctl")
        finally:
            if not was_disabled:
                enable_progress_bars()
        if Path(got).resolve() != dest.resolve():
            os.replace(got, dest)
        _drop_local_dir_metadata(dest.parent)

    def commit(
        self, repo_id: str, files: dict[str, Path], message: str, revision: str | None, private: bool,
        space_sdk: str | None = None,
    ) -> CommitResult:
        """One commit to a model repo, or with ``space_sdk`` to a Space of that SDK (created with it)."""
        from huggingface_hub import CommitOperationAdd

        kind = {"repo_type": "space"} if space_sdk else {}
        with hub_errors(self.where, repo_id, revision, writing=True):
            self.api.create_repo(repo_id, private=private, exist_ok=True, space_sdk=space_sdk, **kind)
            if revision and revision != DEFAULT_BRANCH:
                self.api.create_branch(repo_id, branch=revision, exist_ok=True, **kind)
            before = self.api.repo_info(repo_id, revision=revision, **kind).sha
            ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
            info = self.api.create_commit(repo_id, ops, commit_message=message, revision=revision, **kind)
        return CommitResult(info.oid, info.commit_url, changed=info.oid != before)

    def space_url(self, repo_id: str) -> str:
        """Where a Space is seen on this hub (the model card links there)."""
        return f"{self.endpoint}/spaces/{repo_id}"


def _drop_local_dir_metadata(directory: Path) -> None:
    """``local_dir`` downloads keep bookkeeping under ``.cache/huggingface``; a model dir holds model files only."""
    import shutil

    shutil.rmtree(directory / ".cache", ignore_errors=True)


@contextlib.contextmanager
def hub_errors(where: str, repo_id: str, revision: str | None = None, filename: str | None = None,
               writing: bool = False) -> Iterator[None]:
    """Translate ``huggingface_hub`` failures into deitctl's one-line errors."""
    try:
        yield
    except Exception as e:
        translated = _translate(_hub_cause(e), where, repo_id, revision or DEFAULT_BRANCH, filename, writing)
        if translated is None:
            raise
        raise translated from None


def _hub_cause(e: BaseException) -> BaseException:
    """The client wraps some failures (an LFS upload: RuntimeError from HfHubHTTPError); find the real one."""
    from huggingface_hub.errors import HfHubHTTPError

    seen = e
    while seen is not None:
        if isinstance(seen, (HfHubHTTPError, ConnectionError, TimeoutError)) or _is_transport(seen):
            return seen
        seen = seen.__cause__
    return e


def _is_transport(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0] in _TRANSPORT_MODULES


def _translate(e: BaseException, where: str, repo_id: str, rev: str, filename: str | None,
               writing: bool) -> DeitctlError | None:
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, RevisionNotFoundError):
        return UsageError(f"{repo_id}: no revision '{rev}' on {where}; check the branch, tag or commit")
    if isinstance(e, RemoteEntryNotFoundError):
        return DeitctlError(f"{repo_id}@{rev}: {filename or 'a file'} is missing on {where}; "
                            "the repo is incomplete — push the model again")
    if isinstance(e, RepositoryNotFoundError):
        return UsageError(f"{repo_id}: no such model repo on {where} (or it is private and your token cannot read "
                          "it); check the name, or log in with `hf auth login` / HF_TOKEN")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            need = "write" if writing else "read"
            return DeitctlError(f"{where} refused the request (HTTP {status}): log in with `hf auth login` or set "
                                f"HF_TOKEN to a token with {need} access to {repo_id}")
        return DeitctlError(f"{where} answered HTTP {status} for {repo_id}: {_server_message(e)}")
    if isinstance(e, OfflineModeIsEnabled):
        return DeitctlError(f"HF_HUB_OFFLINE is set: cannot reach {where} for {repo_id}; unset it to use the hub")
    if isinstance(e, (ConnectionError, TimeoutError)) or _is_transport(e):
        return HubUnreachable(f"cannot reach the hub at {where} ({type(e).__name__}); check HF_ENDPOINT and the "
                              "network, or use a directory hub with --hub-dir")
    return None


def _server_message(e: Exception) -> str:
    """The server's own message (X-Error-Message), else the first line of the client's."""
    response = getattr(e, "response", None)
    text = (response.headers.get("X-Error-Message") if response is not None else None) or str(e)
    return text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__

"""``deitctl push`` / ``deitctl pull``: a model directory to a hub and back, checked at both ends.

push: one commit holding ``config.json``, ``model.safetensors``, a generated ``README.md`` model card
(``deitctl.records.modelcard``) and ``curves.png`` when the run has one. The model is loaded first, so
something that is not a model, or whose config does not fit its weights, is refused before anything
is sent. With ``demo``, a Space of the same name follows (``deitctl.app.space``: a Gradio app running
``deitctl demo`` on the pushed model), and the card links to it. pull: safetensors and config only, checksums verified, and the model rebuilt from its config
before the files are kept (``deitctl.hub.client``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deitctl.core.errors import DeitctlError, UsageError
from deitctl.hub.types import DEFAULT_BRANCH, REVISION, PullResult, file_sha256, parse_repo


@dataclass
class PushRequest:
    model: Path  # a run or model directory
    repo_id: str
    revision: str | None = None
    private: bool = False
    message: str | None = None
    hub_dir: Path | None = None
    demo: bool = False  # also publish a Space that shows the model working


@dataclass
class PullRequest:
    repo: str  # org/name[@revision]
    out: Path | None = None
    hub_dir: Path | None = None
    overwrite: bool = False


def push(req: PushRequest) -> dict[str, Any]:
    """Publish a run or model directory as one commit: weights, config, model card (+ curves.png)."""
    from deitctl.hub import client
    from deitctl.models.store import is_model_dir, load_model_dir
    from deitctl.models.types import CONFIG, WEIGHTS
    from deitctl.records.modelcard import build_card
    from deitctl.records.rundir import CURVES

    repo_id, at = parse_repo(req.repo_id)
    if at:
        raise UsageError(f"write the branch as --revision {at}, not {repo_id}@{at}")
    if req.revision and not REVISION.match(req.revision):
        raise UsageError(f"--revision '{req.revision}' is not a branch name (letters, digits, . _ - /)")
    source = req.model
    if not is_model_dir(source):
        raise UsageError(f"{source}: not a model or run directory (needs {CONFIG} and {WEIGHTS}); nothing was pushed")
    remote = client.connect(req.hub_dir)  # an unreachable hub is said before the model is even loaded
    if req.demo and not remote.hosts_spaces:
        raise UsageError(f"--demo publishes a Space, which runs on a Hub, and {remote.where} only keeps files; push "
                         "without --demo (and run `deitctl demo` on the model), or push to a Hub")
    loaded = load_model_dir(source)  # refuses a config that does not fit the weights, before any upload
    demo_url = remote.space_url(repo_id) if req.demo else None  # type: ignore[attr-defined]
    card = build_card(source, repo_id, loaded, demo_url)
    with tempfile.TemporaryDirectory(prefix="deitctl-card-") as tmp:
        readme = Path(tmp) / "README.md"
        readme.write_text(card)
        files = {CONFIG: source / CONFIG, WEIGHTS: source / WEIGHTS, "README.md": readme}
        if (source / CURVES).is_file():
            files[CURVES] = source / CURVES
        result = client.push(remote, repo_id, files, req.message or f"Upload {loaded.arch} with deitctl",
                             req.revision, req.private)
    pushed = {"repo_id": repo_id, "revision": req.revision or DEFAULT_BRANCH, "commit": result.commit,
              "url": result.url, "changed": result.changed, "files": sorted(files),
              "sha256": file_sha256(source / WEIGHTS)}
    if req.demo:
        pushed["space"] = _push_space(remote, repo_id, req)
    return pushed


def _push_space(remote: Any, repo_id: str, req: PushRequest) -> dict[str, Any]:
    """The Space of the same name, whose app loads the model just pushed (on its branch, when not main)."""
    from deitctl.app.space import space_files
    from deitctl.hub import client

    model = f"{repo_id}@{req.revision}" if req.revision else repo_id
    with tempfile.TemporaryDirectory(prefix="deitctl-space-") as tmp:
        files = space_files(repo_id, model, f"{remote.endpoint}/{repo_id}", Path(tmp))
        try:
            result = client.push_space(remote, repo_id, files, f"Demo of {model} with deitctl", req.private)
        except DeitctlError as e:
            raise type(e)(f"the model was pushed, the Space was not: {e}; push again with --demo to retry") from None
    return {"repo_id": repo_id, "url": remote.space_url(repo_id), "commit": result.commit, "changed": result.changed,
            "files": sorted(files)}


def pull(req: PullRequest) -> PullResult:
    from deitctl.hub import client
    from deitctl.models.store import check_model_dir

    return client.pull(req.repo, check_model_dir, req.out, req.hub_dir, req.overwrite)

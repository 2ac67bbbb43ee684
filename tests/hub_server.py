"""A small in-memory stand-in for the Hugging Face Hub, spoken to by the real ``huggingface_hub`` client.

It answers the endpoints the client uses to create repos and branches, upload (regular files inline
in the commit, ``*.safetensors``/``*.png`` through the LFS batch API like the Hub's .gitattributes),
read repo info, list trees and download files — with the Hub's error headers (``X-Error-Code``).
Model repos (``/api/models/…``, ``/{id}/resolve/…``), dataset repos (``/api/datasets/…``,
``/datasets/{id}/resolve/…``, what ``datasets.load_dataset(id, streaming=True)`` reads through
``HfFileSystem``) and Spaces (``/api/spaces/…``, created with their SDK: ``push --demo``) share the same
routes; downloads answer ``Range`` requests with 206 Partial Content.
Listens on 127.0.0.1 only, on a free port, in a daemon thread. Tests inspect ``HubState`` to see
what was committed (e.g. that a refused push sent nothing) and which byte ranges were read.
State keys: a model repo is ``org/name``, a dataset repo ``datasets/org/name``, a Space ``spaces/org/name``
(see ``repo_key``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".png", ".onnx", ".bin")
GITATTRIBUTES = b"".join(b"*%s filter=lfs diff=lfs merge=lfs -text\n" % s.encode() for s in LFS_SUFFIXES)


KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}  # URL segment -> repo_type


def repo_key(repo_id: str, repo_type: str | None = None) -> str:
    """Where ``HubState.repos`` keeps a repo: models under their id, datasets and Spaces under ``datasets/{id}`` and
    ``spaces/{id}`` (as in URLs)."""
    return repo_id if repo_type in (None, "model") else f"{repo_type}s/{repo_id}"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    sdk: str | None = None  # a Space's SDK, as created (gradio, streamlit, docker, static)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> {path: content}


@dataclass
class HubState:
    token: str | None = None  # when set, writes need "Authorization: Bearer <token>"
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content
    commits_made: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (repo, commit, paths)
    tampered: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (commit, path) -> bytes served instead
    requests: list[str] = field(default_factory=list)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header) of each ranged download
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_commit(self, repo_id: str, branch: str, files: dict[str, bytes], message: str) -> str:
        repo = self.repos[repo_id]
        parent = repo.branches.get(branch, "")
        body = json.dumps({"parent": parent, "message": message,
                           "files": {p: git_oid(c) for p, c in sorted(files.items())}}).encode()
        commit = hashlib.sha1(body).hexdigest()
        repo.commits[commit] = dict(files)
        repo.branches[branch] = commit
        return commit

    def corrupt(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> None:
        """Serve other bytes for a file while still reporting the original checksum (a damaged store)."""
        repo = self.repos[repo_id]
        self.tampered[(repo.branches.get(revision, revision), path)] = data


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState  # set on the subclass the server is created with

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    # -------------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, head: bool = False) -> None:
        data = raw if raw is not None else json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if raw is None:
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.state.requests.append(f"{method} {path}")
        body = self._body() if method in ("POST", "PUT") else b""
        try:
            with self.state.lock:
                self._route(method, path, query, body)
        except HubError as e:
            headers = {"X-Error-Message": e.message, **({"X-Error-Code": e.code} if e.code else {})}
            self._send(e.status, {"error": e.message}, headers, head=method == "HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ---------------------------------------------------------------------------------- routes
    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        api = r"/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"  # a model, dataset or Space's API
        web = r"/(?:(?P<kind>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)"  # its web path: /org/name, /datasets/org/name
        routes: list[tuple[str, str, Any]] = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", lambda body: self._send(200, {"errors": [], "warnings": []})),
            ("POST", rf"{api}/preupload/(?P<rev>.+)", self.preupload),
            ("POST", rf"{api}/commit/(?P<rev>.+)", self.commit),
            ("POST", rf"{api}/branch/(?P<branch>.+)", self.create_branch),
            ("POST", rf"{api}/paths-info/(?P<rev>.+)", self.paths_info),
            ("POST", rf"{web}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self.lfs_put),
            ("GET", rf"{api}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", self.tree),
            ("GET", rf"{api}(?:/revision/(?P<rev>.+))?", self.repo_info),
            ("GET|HEAD", rf"{web}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
        ]
        for methods, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if method in methods.split("|") and match:
                if method == "POST" and not pattern.endswith(("validate-yaml", "paths-info/(?P<rev>.+)")):  # writes
                    # (the LFS PUT goes to a pre-signed storage URL: no token, like S3 on the real Hub)
                    self._check_auth()
                args = match.groupdict()
                if "kind" in args:  # handlers see the repo's state key: org/name or datasets/org/name
                    args["repo"] = repo_key(args["repo"], KINDS.get(args.pop("kind") or "models"))
                extra = {"body": body} if method in ("POST", "PUT") else {"query": query, "method": method}
                return handler(**args, **extra)
        raise HubError(404, None, f"no route for {method} {path}")

    def _check_auth(self) -> None:
        if self.state.token and self.headers.get("Authorization") != f"Bearer {self.state.token}":
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.state.repos:
            raise HubError(404, "RepoNotFound", "Repository not found")
        return self.state.repos[repo_id]

    def _files(self, repo_id: str, rev: str | None) -> tuple[str, dict[str, bytes]]:
        repo = self._repo(repo_id)
        rev = rev or "main"
        commit = repo.branches.get(rev) or (rev if rev in repo.commits else None)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit, repo.commits[commit]

    @staticmethod
    def _id(key: str) -> tuple[str, str]:
        """(repo id, repo type) of a state key."""
        for kind in ("dataset", "space"):
            if key.startswith(f"{kind}s/"):
                return key.removeprefix(f"{kind}s/"), kind
        return key, "model"

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @staticmethod
    def _lfs(path: str, content: bytes, sha_key: str) -> dict[str, Any]:
        """LFS metadata as the Hub reports it (model info names the hash ``sha256``, trees ``oid``)."""
        if not path.endswith(LFS_SUFFIXES):
            return {}
        return {"lfs": {"size": len(content), "pointerSize": 134, sha_key: hashlib.sha256(content).hexdigest()}}

    # --------------------------------------------------------------------------------- writing
    def create_repo(self, body: bytes) -> None:
        payload = json.loads(body)
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        if repo_type not in KINDS.values():
            raise HubError(400, None, f"repo type {repo_type!r} is not served here")
        if (repo_type == "space") != bool(payload.get("sdk")):
            raise HubError(400, None, "a Space is created with its sdk, and only a Space has one")
        key = repo_key(repo_id, repo_type)
        url = f"{self.base}/{key}"
        if key in self.state.repos:
            return self._send(409, {"error": f"You already created this {repo_type} repo", "url": url})
        self.state.repos[key] = Repo(private=payload.get("visibility") == "private", sdk=payload.get("sdk"))
        self.state.new_commit(key, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        return self._send(200, {"url": url, "name": repo_id})

    def create_branch(self, repo: str, branch: str, body: bytes) -> None:
        r = self._repo(repo)
        if branch in r.branches:
            raise HubError(409, None, "Reference already exists")
        r.branches[branch] = r.branches["main"]
        return self._send(200, {})

    def preupload(self, repo: str, rev: str, body: bytes) -> None:
        _, files = self._files(repo, rev) if rev in self._repo(repo).branches else (None, {})
        out = []
        for f in json.loads(body)["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES)
            existing = files.get(f["path"])
            oid = None if existing is None else hashlib.sha256(existing).hexdigest() if lfs else git_oid(existing)
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._send(200, {"files": out})

    def lfs_batch(self, repo: str, body: bytes) -> None:
        self._repo(repo)
        objects = []
        for obj in json.loads(body)["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {"upload": {"href": f"{self.base}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, None, "sha256 of the uploaded content does not match its oid")
        self.state.lfs[oid] = body
        self._send(200, {})

    def commit(self, repo: str, rev: str, body: bytes) -> None:
        _, files = self._files(repo, rev)
        files = dict(files)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.state.lfs:
                    raise HubError(400, None, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.state.lfs[value["oid"]]
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
        commit = self.state.new_commit(repo, rev, files, header["summary"])
        self.state.commits_made.append((repo, commit, sorted(i["value"]["path"] for i in lines if i["key"] != "header")))
        return self._send(200, {"commitOid": commit, "commitUrl": f"{self.base}/{repo}/commit/{commit}", "success": True})

    # --------------------------------------------------------------------------------- reading
    def repo_info(self, repo: str, rev: str | None, query: dict[str, list[str]], method: str) -> None:
        commit, files = self._files(repo, rev)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, content in sorted(files.items()):
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry.update(size=len(content), blobId=git_oid(content), **self._lfs(path, content, "sha256"))
            siblings.append(entry)
        repo_id, repo_type = self._id(repo)
        info = {"id": repo_id, "sha": commit, "private": self._repo(repo).private, "tags": [], "siblings": siblings}
        if repo_type == "model":
            return self._send(200, {**info, "modelId": repo_id, "library_name": "timm"})
        if repo_type == "space":
            return self._send(200, {**info, "sdk": self._repo(repo).sdk, "cardData": self._card_data(files)})
        return self._send(200, {**info, "_id": commit[:24], "author": repo_id.split("/")[0], "disabled": False,
                                "gated": False, "downloads": 0, "likes": 0, "cardData": self._card_data(files)})

    @staticmethod
    def _card_data(files: dict[str, bytes]) -> dict[str, Any]:
        """The README.md card's YAML front matter, as the Hub reports it in ``cardData``."""
        import yaml

        text = files.get("README.md", b"").decode()
        if not text.startswith("---\n") or "\n---" not in text[3:]:
            return {}
        return yaml.safe_load(text[4:text.index("\n---", 3)]) or {}

    @staticmethod
    def _dirs(files: dict[str, bytes]) -> set[str]:
        """Every folder that holds a file (a git tree has no empty folders)."""
        return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}

    def _listing(self, repo: str, rev: str, paths: list[str]) -> list[dict[str, Any]]:
        _, files = self._files(repo, rev)
        dirs = self._dirs(files)
        return [{"type": "file", "path": p, "oid": git_oid(files[p]), "size": len(files[p]), **self._lfs(p, files[p], "oid")}
                if p in files else {"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0}
                for p in paths if p in files or p in dirs]

    def tree(self, repo: str, rev: str, sub: str | None, query: dict[str, list[str]], method: str) -> None:
        _, files = self._files(repo, rev)
        sub = (sub or "").strip("/")
        if sub in files:  # a file's own path lists that file
            return self._send(200, self._listing(repo, rev, [sub]))
        if sub and sub not in self._dirs(files):
            raise HubError(404, "EntryNotFound", f"{sub} does not exist on {rev}")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        under = [p for p in sorted(files | dict.fromkeys(self._dirs(files), b"")) if not sub or p.startswith(sub + "/")]
        depth = sub.count("/") + 1 if sub else 0
        return self._send(200, self._listing(repo, rev, [p for p in under if recursive or p.count("/") == depth]))

    def paths_info(self, repo: str, rev: str, body: bytes) -> None:
        paths = [p.strip("/") for p in parse_qs(body.decode()).get("paths", [])]
        return self._send(200, self._listing(repo, rev, paths))

    def resolve(self, repo: str, rev: str, file: str, query: dict[str, list[str]], method: str) -> None:
        commit, files = self._files(repo, rev)
        if file not in files:
            raise HubError(404, "EntryNotFound", f"{file} does not exist on {rev}")
        content = self.state.tampered.get((commit, file), files[file])
        lfs = file.endswith(LFS_SUFFIXES)
        etag = hashlib.sha256(content).hexdigest() if lfs else git_oid(content)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        wanted = self.headers.get("Range")
        if not wanted or method == "HEAD":
            return self._send(200, raw=content, headers=headers, head=method == "HEAD")
        self.state.ranges.append((unquote(urlsplit(self.path).path), wanted))
        span = self._byte_range(wanted, len(content))
        if span is None:
            return self._send(416, {"error": f"range {wanted} not satisfiable"},
                              {**headers, "Content-Range": f"bytes */{len(content)}"})
        start, stop = span
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(content)}"
        return self._send(206, raw=content[start:stop], headers=headers)

    @staticmethod
    def _byte_range(header: str, size: int) -> tuple[int, int] | None:
        """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` (one range) as a [start, stop) slice; None if unsatisfiable."""
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if not match or match.groups() == ("", ""):
            return None
        first, last = match.groups()
        if first == "":
            start, stop = max(0, size - int(last)), size
        else:
            start, stop = int(first), min(size, int(last) + 1) if last else size
        return (start, stop) if start < stop else None


class HubServer:
    """``with HubServer() as hub: hub.url, hub.state`` — serves until the block ends."""

    def __init__(self, token: str | None = None) -> None:
        self.state = HubState(token=token)
        handler = type("BoundHandler", (Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

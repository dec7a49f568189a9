"""A loopback stand-in for the Hugging Face Hub HTTP API, for tests that run the real client over HTTP.

It serves exactly the calls that ``huggingface_hub`` (``HfApi.create_repo``, ``create_branch``,
``create_commit`` / ``upload_folder``, ``repo_info``) and ``hf_hub_download`` (used by
``transformers``' ``from_pretrained``) make for a small model repository:

=======  ==============================================  ===================================================
method   path                                            what
=======  ==============================================  ===================================================
POST     ``/api/repos/create``                           create a model repo, or a Space (``type: space``)
                                                         (JSON: name, organization, visibility); 409 if it
                                                         exists
POST     ``/api/validate-yaml``                          check a README's YAML metadata block
POST     ``/api/models/{repo}/branch/{branch}``          create a branch (JSON: optional startingPoint)
POST     ``/api/models/{repo}/preupload/{rev}``          upload mode of each file: always ``"regular"``
                                                         (files go base64 in the commit; no LFS, no Xet);
                                                         also ``/api/spaces/...``
POST     ``/api/models/{repo}/commit/{rev}``             NDJSON commit: a header line, then ``file`` lines;
                                                         also ``/api/spaces/...``
GET      ``/api/models/{repo}[/revision/{rev}]``         repo info (id, sha, private, siblings)
GET      ``/api/agent-harnesses``                      the client's harness registry (served empty)
HEAD/GET ``/{repo}/resolve/{rev}/{path}``                file metadata / content, with ``ETag`` (git blob
                                                         id), ``X-Repo-Commit`` and ``Content-Length``
=======  ==============================================  ===================================================

Errors carry the Hub's ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) so the client raises its own typed errors. Writes need ``Authorization: Bearer
<token>`` with the server's token; private repositories answer reads without it as the Hub does (401,
``RepoNotFound``). Xet and LFS headers are never sent, so the client uses plain HTTP transfers.

Any other call is answered ``501`` and recorded in :attr:`HubServer.unhandled`: a client feature that
the server does not know fails loudly instead of passing silently.

Every request is recorded in :attr:`HubServer.requests` (method, path, query, headers, body).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_PART = r"(?P<repo>[^/]+/[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(r"^/api/agent-harnesses$"), "agent_harnesses"),
    ("POST", re.compile(rf"^/api/models/{REPO_PART}/branch/(?P<branch>[^/]+)$"), "create_branch"),
    (
        "POST",
        re.compile(rf"^/api/(?P<kind>models|spaces)/{REPO_PART}/preupload/(?P<rev>[^/]+)$"),
        "preupload",
    ),
    ("POST", re.compile(rf"^/api/(?P<kind>models|spaces)/{REPO_PART}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{REPO_PART}/revision/(?P<rev>[^/]+)$"), "repo_info"),
    ("GET", re.compile(rf"^/api/models/{REPO_PART}$"), "repo_info"),
    ("HEAD", re.compile(rf"^/{REPO_PART}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("GET", re.compile(rf"^/{REPO_PART}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]
LICENSE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


def _repo_key(kind: str, repo_id: str) -> str:
    """Where a repository is kept in :attr:`HubServer.repos`: model repos by id, Spaces as ``spaces/<id>``."""
    return repo_id if kind == "models" else f"{kind}/{repo_id}"


def git_blob_id(content: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, bytes]
    summary: str
    description: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """An error answer: status, message and the Hub's ``X-Error-Code``."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        commit: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit
        self.extra = extra or {}


class HubServer:
    """The server state and its thread. Use as a context manager; :attr:`url` is the endpoint.

    Args:
        token: The one valid access token; writes must carry it as ``Authorization: Bearer <token>``.
        user: The namespace of repos created without an organization.
    """

    def __init__(self, token: str, user: str = "tester") -> None:
        self.token = token
        self.user = user
        self.repos: dict[str, Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def requests_to(self, action: str) -> list[RecordedRequest]:
        """Recorded requests routed to ``action`` (e.g. ``"commit"``, ``"create_repo"``)."""
        return [r for r in self.requests if _route(r.method, r.path)[0] == action]

    def file(self, repo_id: str, path: str, revision: str = "main", kind: str = "models") -> bytes:
        """Content of ``path`` at ``revision`` of a model repo (or, ``kind="spaces"``, a Space)."""
        commit = self.repos[_repo_key(kind, repo_id)].resolve(revision)
        assert commit is not None, f"{repo_id} has no revision {revision}"
        return commit.files[path]

    # -- request handling ------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(request)
            action, params = _route(request.method, request.path)
            if action is None:
                self.unhandled.append(request)
                return _json_response(
                    501, {"error": f"not served by the test Hub: {request.method} {request.path}"}
                )
            try:
                return getattr(self, f"_{action}")(request, **params)
            except HubError as err:
                headers = {"X-Error-Message": err.message}
                if err.code:
                    headers["X-Error-Code"] = err.code
                if err.commit:
                    headers["X-Repo-Commit"] = err.commit
                return _json_response(err.status, {"error": err.message, **err.extra}, headers)

    def _authorized(self, request: RecordedRequest) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _require_write(self, request: RecordedRequest) -> None:
        if "authorization" not in request.headers:
            raise HubError(401, "Authorization header is required for this call")
        if not self._authorized(request):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, request: RecordedRequest, repo_id: str) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(request)):
            # As the Hub: 401 to anonymous callers, 404 to authenticated ones, for missing or hidden repos.
            status = 404 if self._authorized(request) else 401
            raise HubError(status, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _create_repo(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        self._require_write(request)
        payload = request.json()
        kind = payload.get("type", "model")
        if kind not in ("model", "space"):
            raise HubError(400, f"only model repos and Spaces are served, got type {kind!r}")
        if kind == "space" and not payload.get("sdk"):
            raise HubError(400, "a Space needs an sdk")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        key = _repo_key(f"{kind}s", repo_id)
        if key in self.repos:
            raise HubError(409, "You already created this model repo", extra={"url": f"{self.url}/{repo_id}"})
        visibility = payload.get("visibility", "public")
        if visibility not in ("public", "private"):
            raise HubError(400, f"invalid visibility {visibility!r}")
        repo = Repo(repo_id, private=visibility == "private")
        initial = Commit(
            _oid("init", repo_id),
            None,
            {".gitattributes": b"*.safetensors filter=lfs\n"},
            "initial commit",
            "",
        )
        repo.commits[initial.oid] = initial
        repo.branches["main"] = initial.oid
        self.repos[key] = repo
        return _json_response(200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _agent_harnesses(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        # Fetched by the client's user-agent code when the environment suggests a harness; an empty
        # registry (the client's own offline fallback) detects nothing.
        return _json_response(200, {"standardEnvVars": [], "harnesses": {}})

    def _validate_yaml(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        payload = request.json()
        errors = validate_card_metadata(payload.get("content", ""))
        status = 400 if errors else 200
        return _json_response(status, {"errors": [{"message": e} for e in errors], "warnings": []})

    def _create_branch(
        self, request: RecordedRequest, repo: str, branch: str
    ) -> tuple[int, dict[str, str], bytes]:
        self._require_write(request)
        target = self._repo(request, repo)
        if branch in target.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        starting = (request.json() if request.body else {}).get("startingPoint") or "main"
        target.branches[branch] = self._commit_at(target, starting).oid
        return _json_response(200, {})

    def _preupload(
        self, request: RecordedRequest, repo: str, rev: str, kind: str = "models"
    ) -> tuple[int, dict[str, str], bytes]:
        self._require_write(request)
        target = self._repo(request, _repo_key(kind, repo))
        commit = self._commit_at(target, rev)
        files = []
        for item in request.json()["files"]:
            base64.b64decode(item["sample"], validate=True)
            existing = commit.files.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(existing) if existing is not None else None,
                }
            )
        return _json_response(200, {"files": files, "commitOid": commit.oid})

    def _commit(
        self, request: RecordedRequest, repo: str, rev: str, kind: str = "models"
    ) -> tuple[int, dict[str, str], bytes]:
        self._require_write(request)
        target = self._repo(request, _repo_key(kind, repo))
        if request.query.get("create_pr"):
            raise HubError(400, "pull requests are not served by the test Hub")
        if rev not in target.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        if request.headers.get("content-type") != "application/x-ndjson":
            raise HubError(400, f"expected application/x-ndjson, got {request.headers.get('content-type')}")
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        parent = target.branches[rev]
        files = dict(target.commits[parent].files)
        for line in lines[1:]:
            if line.get("key") != "file" or line["value"].get("encoding") != "base64":
                raise HubError(400, f"commit operation not served by the test Hub: {line.get('key')!r}")
            files[line["value"]["path"]] = base64.b64decode(line["value"]["content"], validate=True)
        oid = _oid(parent, header["summary"], *(f"{p}:{git_blob_id(c)}" for p, c in sorted(files.items())))
        target.commits[oid] = Commit(oid, parent, files, header["summary"], header.get("description", ""))
        target.branches[rev] = oid
        return _json_response(
            200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
        )

    def _repo_info(
        self, request: RecordedRequest, repo: str, rev: str = "main"
    ) -> tuple[int, dict[str, str], bytes]:
        target = self._repo(request, repo)
        commit = self._commit_at(target, rev)
        siblings = [
            {"rfilename": path, "size": len(content), "blobId": git_blob_id(content)}
            for path, content in sorted(commit.files.items())
        ]
        info = {
            "id": repo,
            "modelId": repo,
            "sha": commit.oid,
            "private": target.private,
            "siblings": siblings,
            "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "tags": [],
        }
        return _json_response(200, info)

    def _resolve(
        self, request: RecordedRequest, repo: str, rev: str, path: str
    ) -> tuple[int, dict[str, str], bytes]:
        target = self._repo(request, repo)
        commit = self._commit_at(target, rev)
        content = commit.files.get(path)
        if content is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit=commit.oid)
        headers = {
            "ETag": f'"{git_blob_id(content)}"',
            "X-Repo-Commit": commit.oid,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status, body = 200, content
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(content) - 1
            body = content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            status = 206
        return status, headers, body


def validate_card_metadata(readme: str) -> list[str]:
    """What the Hub's ``/api/validate-yaml`` would reject in a model card's metadata block."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme, flags=re.DOTALL)
    if match is None:
        return ["no YAML metadata block at the top of README.md"]
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {exc}"]
    if not isinstance(data, dict):
        return ["metadata must be a mapping"]
    errors = []
    for key in ("library_name", "license", "pipeline_tag"):
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    if isinstance(data.get("license"), str) and not LICENSE_PATTERN.match(data["license"]):
        errors.append(f'"license" is not a license identifier: {data["license"]!r}')
    for key in ("tags", "datasets", "metrics", "base_model"):
        value = data.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    for i, entry in enumerate(data.get("model-index") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f'"model-index[{i}].name" is required')
            continue
        for j, result in enumerate(entry.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance(result.get("task", {}).get("type"), str):
                errors.append(f'"{where}.task.type" is required')
            dataset = result.get("dataset", {})
            if not isinstance(dataset.get("type"), str) or not isinstance(dataset.get("name"), str):
                errors.append(f'"{where}.dataset.type" and ".name" are required')
            for k, metric in enumerate(result.get("metrics") or []):
                if not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f'"{where}.metrics[{k}]" needs "type" and "value"')
    return errors


def _oid(*parts: str | None) -> str:
    return hashlib.sha1("\n".join(p or "" for p in parts).encode()).hexdigest()


def _route(method: str, path: str) -> tuple[str | None, dict[str, str]]:
    for route_method, pattern, action in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            return action, {k: unquote(v) for k, v in match.groupdict().items()}
    return None, {}


def _json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            status, headers, payload = server.handle(request)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler

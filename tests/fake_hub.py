"""A tiny stand-in for the Hugging Face hub's dataset endpoints on 127.0.0.1, for offline tests.

It answers the requests that huggingface_hub and datasets make when `datasets.load_dataset(repo, config,
split=..., revision=...)` runs with HF_ENDPOINT pointing here: repo info by revision, file tree listing,
paths-info, and file downloads (HEAD and GET with Range) with the X-Repo-Commit / ETag headers the client
pins with. Errors carry the hub's X-Error-Code so the client raises its real exception types
(RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    """One dataset repository with a single commit (its files, by path); `main` points at it."""

    files: dict[str, bytes]
    gated: bool = False
    commit: str = ""
    # Paths whose downloads answer 500 (a download that breaks), and how many GETs each got.
    broken: set[str] = field(default_factory=set)
    gets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.commit:
            digest = hashlib.sha1()
            for path in sorted(self.files):
                digest.update(path.encode() + b"\0" + self.files[path])
            self.commit = digest.hexdigest()

    def resolve(self, revision: str) -> str | None:
        return self.commit if revision in ("main", self.commit) else None


class FakeHub:
    """Serve `repos` (repo id -> Repo) as dataset repositories; use as a context manager.

    A key "org/name@branch" serves another branch of org/name (its own files and commit).
    """

    def __init__(self, repos: dict[str, Repo]):
        self.repos = repos
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, obj, head: bool = False) -> None:
            self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message,
                                      "Content-Type": "application/json"}, head)

        def _repo(self, repo_id: str, revision: str | None, head: bool = False):
            """The repo and resolved commit, or None after answering the error the hub would give."""
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.", head)
                return None
            if repo.gated and "authorization" not in {k.lower() for k in self.headers.keys()}:
                self._error(401, "GatedRepo", f"Access to dataset {repo_id} is restricted. You must have access to it "
                            "and be authenticated to access it. Please log in.", head)
                return None
            commit = repo.resolve(revision or "main")
            if commit is None:
                # Another branch of the same repo (e.g. refs/convert/parquet) is served as "{repo}@{branch}".
                branches = [r for key, r in hub.repos.items() if key.startswith(repo_id + "@")
                            and (key == f"{repo_id}@{revision}" or r.commit == revision)]
                if not branches:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
                    return None
                repo, commit = branches[0], branches[0].commit
            return repo, commit

        def _entries(self, repo: Repo, prefix: str, recursive: bool) -> list[dict]:
            prefix = prefix.strip("/")
            out, dirs = [], set()
            for path in sorted(repo.files):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rest = path[len(prefix) + 1:] if prefix else path
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    if not recursive and depth > 1:
                        break
                    d = "/".join(([prefix] if prefix else []) + parts[:depth])
                    if d not in dirs:
                        dirs.add(d)
                        out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
                if recursive or len(parts) == 1:
                    out.append(self._file_entry(repo, path))
            return out

        @staticmethod
        def _file_entry(repo: Repo, path: str) -> dict:
            data = repo.files[path]
            return {"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": path}

        def _parse(self):
            url = urlparse(self.path)
            return [unquote(p) for p in url.path.split("/") if p], parse_qs(url.query)

        def do_HEAD(self) -> None:
            self._dispatch(head=True)

        def do_GET(self) -> None:
            self._dispatch(head=False)

        def do_POST(self) -> None:
            parts, _ = self._parse()
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            # /api/datasets/{ns}/{name}/paths-info/{revision}
            if len(parts) >= 6 and parts[:2] == ["api", "datasets"] and parts[4] == "paths-info":
                found = self._repo(f"{parts[2]}/{parts[3]}", "/".join(parts[5:]))
                if found is None:
                    return
                repo, _commit = found
                wanted = [p.strip("/") for p in form.get("paths", [])]
                entries = []
                for path in wanted:
                    if path in repo.files:
                        entries.append(self._file_entry(repo, path))
                    elif any(f.startswith(path + "/") for f in repo.files):
                        entries.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(),
                                        "size": 0, "path": path})
                self._json(entries)
                return
            self._error(404, "EntryNotFound", f"no route for POST {self.path}")

        def _dispatch(self, head: bool) -> None:
            parts, query = self._parse()
            if len(parts) >= 4 and parts[:2] == ["api", "datasets"]:
                repo_id = f"{parts[2]}/{parts[3]}"
                rest = parts[4:]
                revision = "/".join(rest[1:]) if rest and rest[0] == "revision" else None
                if rest and rest[0] == "tree":
                    revision = rest[1]
                found = self._repo(repo_id, revision, head)
                if found is None:
                    return
                repo, commit = found
                if not rest or rest[0] == "revision":
                    self._json({"id": repo_id, "_id": commit, "sha": commit, "private": False, "gated": repo.gated,
                                "disabled": False, "tags": [], "downloads": 0, "likes": 0,
                                "lastModified": "2024-01-01T00:00:00.000Z", "createdAt": "2024-01-01T00:00:00.000Z",
                                "siblings": [{"rfilename": p} for p in sorted(repo.files)]}, head)
                    return
                if rest[0] == "tree":
                    prefix = "/".join(rest[2:])
                    if prefix and prefix not in repo.files and not any(f.startswith(prefix + "/") for f in repo.files):
                        self._error(404, "EntryNotFound", f"{prefix} does not exist on {revision}", head)
                        return
                    recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                    self._json(self._entries(repo, prefix, recursive), head)
                    return
            # /datasets/{ns}/{name}/resolve/{revision}/{path}
            if len(parts) >= 6 and parts[0] == "datasets" and parts[3] == "resolve":
                found = self._repo(f"{parts[1]}/{parts[2]}", parts[4], head)
                if found is None:
                    return
                repo, commit = found
                path = "/".join(parts[5:])
                if path not in repo.files:
                    self._error(404, "EntryNotFound", f"{path} does not exist at {commit}", head)
                    return
                data = repo.files[path]
                if not head:
                    repo.gets[path] = repo.gets.get(path, 0) + 1
                    if path in repo.broken:
                        self._send(500, b"internal error")
                        return
                headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                           "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
                byte_range = self.headers.get("Range")
                if byte_range and not head and byte_range.startswith("bytes="):
                    start_s, _, end_s = byte_range[6:].partition("-")
                    start = int(start_s or 0)
                    end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    self._send(206, data[start:end + 1], headers)
                    return
                if head:
                    self.send_response(200)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                self._send(200, data, headers)
                return
            self._error(404, "RepoNotFound", f"no route for {self.path}", head)

    return Handler

"""A fake Hugging Face hub on 127.0.0.1 for offline tests: real HTTP, answering the requests the real
huggingface_hub / transformers / datasets clients make (point them at it with HF_ENDPOINT or endpoint=).

Repositories of any type (model, dataset) hold commits (full file sets) and branches/tags pointing at them; a
test commits generated files, moves branches, gates a repository, or injects faults that cut downloads midway.
Endpoints: GET /api/{type}s/{repo}[/revision/{rev}] (info with sha and siblings), GET /api/{type}s/{repo}/refs,
GET /api/{type}s/{repo}/tree/{rev}[/{path}], POST /api/{type}s/{repo}/paths-info/{rev}, HEAD/GET
[/{type}s]/{repo}/resolve/{rev}/{path} (X-Repo-Commit, ETag, Content-Length, Range).
`tiny_tokenizer` and `tiny_model_files` generate real repository content: a BPE tokenizer and seeded tiny models.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_SUFFIXES = (".safetensors", ".bin", ".parquet", ".arrow", ".pt")


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    private: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens that may read a gated or private repo

    def commit_of(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision) or self.tags.get(revision)


@dataclass
class Fault:
    """The next `times` GETs of matching files fail. kind "cut": each is cut midway (the client's own resume retries
    get through once the fault is spent). kind "outage": the first is cut midway, the rest get 503 (a server that
    breaks mid-transfer and stays down a while; the client's resume gives up at once)."""

    pattern: str
    times: float
    kind: str = "cut"
    hits: int = 0


class FakeHub:
    """The repositories, the faults and a log of (method, path, status) of every request served."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------------------------------- content
    def create_repo(self, repo_id: str, repo_type: str = "model", *, gated: bool = False, private: bool = False,
                    tokens: tuple[str, ...] = ()) -> Repo:  # fmt: skip
        repo = Repo(repo_id, repo_type, gated=gated, private=private, tokens=set(tokens))
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        key = (repo_type, repo_id)
        return self.repos[key] if key in self.repos else self.create_repo(repo_id, repo_type)

    def commit(self, repo_id: str, files: dict[str, bytes] | Path, *, branch: str = "main",
               repo_type: str = "model", tag: str | None = None) -> str:  # fmt: skip
        """Commit a full file set (a dict, or every file under a folder) to `branch`; return the commit hash."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = self.repo(repo_id, repo_type)
        digest = hashlib.sha1(f"{repo_id}\0{branch}\0{len(repo.commits)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        repo.branches[branch] = sha
        if tag:
            repo.tags[tag] = sha
        return sha

    def set_branch(self, repo_id: str, branch: str, commit: str, repo_type: str = "model") -> None:
        self.repo(repo_id, repo_type).branches[branch] = commit

    def add_fault(self, pattern: str, times: float, kind: str = "cut") -> Fault:
        assert kind in ("cut", "outage"), kind
        fault = Fault(pattern, times, kind)
        self.faults.append(fault)
        return fault

    def served(self, method: str | None = None, status: int | None = None, contains: str = "") -> list[str]:
        return [p for m, p, s in self.log if (method in (None, m)) and (status in (None, s)) and contains in p]

    # -------------------------------------------------------------------------------------------- server
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeHub":
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------------ repository content


def tiny_tokenizer(folder: Path) -> Path:
    """A real byte-level BPE tokenizer (300 tokens, EOS and PAD of its own) trained on a generated corpus."""
    from ptft.checkpoints import train_tokenizer
    from ptft.provenance import write_jsonl

    corpus = folder / "corpus.jsonl"
    write_jsonl(corpus, [{"text": f"the river {i} flows past the city of stone number {i * 7}"} for i in range(200)])
    train_tokenizer(corpus, {"vocab_size": 300}, 0, folder / "tokenizer")
    (folder / "tokenizer/provenance.json").unlink()
    return folder / "tokenizer"


def tiny_model_files(architecture: str, seed: int, tokenizer_dir: Path, tmp: Path, context: int = 256) -> dict[str, bytes]:
    """Repository files of a real tiny causal LM (olmo, olmo2 or gpt_neox; seeded weights) with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, Olmo2Config, OlmoConfig

    size = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                max_position_embeddings=context, vocab_size=300)  # fmt: skip
    tokenizer = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    vocab = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    ids = {f"{k}_token_id": vocab[tokenizer[f"{k}_token"]] for k in ("eos", "bos", "pad") if tokenizer.get(f"{k}_token")}
    config = {"olmo": OlmoConfig, "olmo2": Olmo2Config, "gpt_neox": GPTNeoXConfig}[architecture](**size, **ids)
    torch.manual_seed(seed)
    folder = tmp / f"{architecture}-{seed}"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files.update({p.name: p.read_bytes() for p in tokenizer_dir.iterdir() if p.is_file()})
    return files


def _file_entry(path: str, data: bytes) -> dict:
    sha256 = hashlib.sha256(data).hexdigest()
    entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": 134}
    return entry


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect; every reply carries Content-Length

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    # ---------------------------------------------------------------------------------------- plumbing
    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.hub.log.append((self.command, self.path, status))

    def _json(self, obj, status: int = 200) -> None:
        self._reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, err: _HubError, head: bool = False) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._reply(err.status, json.dumps({"error": err.message}).encode(), headers, head=head)

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, "RepoNotFound", f"Repository Not Found: {repo_id}")
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if (repo.gated or repo.private) and token not in repo.tokens:
            if repo.private:
                raise _HubError(401, "RepoNotFound", f"Repository Not Found: {repo_id}")
            status = 403 if token else 401
            raise _HubError(status, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it.")
        return repo

    def _commit(self, repo: Repo, revision: str) -> str:
        sha = repo.commit_of(revision)
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _route(self) -> tuple[str, list[str], dict]:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        return url.path, parts, parse_qs(url.query)

    # ------------------------------------------------------------------------------------------ methods
    def do_GET(self):
        self._dispatch(head=False)

    def do_HEAD(self):
        self._dispatch(head=True)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        _, parts, _ = self._route()
        try:
            if len(parts) >= 6 and parts[0] == "api" and parts[4] == "paths-info":
                repo = self._repo(REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}")
                files = repo.commits[self._commit(repo, "/".join(parts[5:]))]
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    paths = json.loads(body).get("paths", [])
                else:
                    paths = parse_qs(body).get("paths", [])
                self._json([_file_entry(p, files[p]) for p in paths if p in files])
                return
            raise _HubError(404, None, f"no such endpoint: POST {self.path}")
        except _HubError as err:
            self._error(err)

    def _dispatch(self, head: bool) -> None:
        _, parts, query = self._route()
        try:
            if parts and parts[0] == "api" and len(parts) >= 4 and parts[1] in REPO_TYPES:
                self._api(REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:], query)
                return
            repo_type = "model"
            if parts and parts[0] in REPO_TYPES:
                repo_type, parts = REPO_TYPES[parts[0]], parts[1:]
            if len(parts) >= 5 and parts[2] == "resolve":
                self._resolve(repo_type, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
                return
            raise _HubError(404, None, f"no such endpoint: {self.command} {self.path}")
        except _HubError as err:
            self._error(err, head=head)

    def _api(self, repo_type: str, repo_id: str, rest: list[str], query: dict) -> None:
        repo = self._repo(repo_type, repo_id)
        if rest == ["refs"]:
            def refs(kind, names):
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in sorted(names.items())]

            self._json({"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": [],
                        "pullRequests": []})  # fmt: skip
            return
        if not rest or rest[0] == "revision":
            sha = self._commit(repo, "/".join(rest[1:]) or "main")
            self._json({
                "id": repo_id, "sha": sha, "private": repo.private, "gated": "auto" if repo.gated else False,
                "disabled": False, "siblings": [{"rfilename": p} for p in sorted(repo.commits[sha])],
                "tags": [], "downloads": 0, "likes": 0,
            })  # fmt: skip
            return
        if rest[0] == "tree":
            sha = self._commit(repo, rest[1] if len(rest) > 1 else "main")
            prefix = "/".join(rest[2:])
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            files = repo.commits[sha]
            entries, folders = [], set()
            for path in sorted(files):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rel = path[len(prefix) + 1 :] if prefix else path
                if "/" in rel and not recursive:
                    folders.add((f"{prefix}/" if prefix else "") + rel.split("/")[0])
                    continue
                entries.append(_file_entry(path, files[path]))
                if recursive:
                    parents = path.split("/")[:-1]
                    folders.update("/".join(parents[: i + 1]) for i in range(len(parents)))
            tree = [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0}
                    for f in sorted(folders)] + entries  # fmt: skip
            self._json(tree)
            return
        raise _HubError(404, None, f"no such endpoint: {self.command} {self.path}")

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._repo(repo_type, repo_id)
        sha = self._commit(repo, revision)
        files = repo.commits[sha]
        if path not in files:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist at {revision}")
        data = files[path]
        etag = hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else hashlib.sha1(data).hexdigest()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        if path.endswith(LFS_SUFFIXES):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        start = 0
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged[6:].partition("-")
            start = int(first or 0)
            end = int(last) + 1 if last else len(data)
            body, status = data[start:end], 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        else:
            body, status = data, 200
        if head:
            headers["Content-Length"] = str(len(data))
            self._reply(200, b"", headers, head=True)
            return
        fault = self._fault(path)
        if fault is not None and fault.kind == "outage" and fault.hits > 1:
            raise _HubError(503, None, "fault injected: service unavailable")
        headers["Content-Length"] = str(len(body))
        if fault is None:
            self._reply(status, body, headers)
            return
        # Send the headers and half the body, then drop the connection: a transfer broken midway.
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        self.hub.log.append((self.command, self.path, -1))

    def _fault(self, path: str) -> Fault | None:
        with self.hub._lock:
            for fault in self.hub.faults:
                if fault.times > 0 and fnmatch.fnmatch(path, fault.pattern):
                    fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

"""`python -m eta data fetch` against a loopback server: the real source table, its URLs moved to
127.0.0.1, serving release-shaped copies of the benchmark fixtures (archives, raw files, COCO
images) and the hub routes ``huggingface_hub`` uses; then every loader reads what was written."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from eta import cli
from eta.benchmarks import get_info, list_benchmarks, load_benchmark
from eta.fetch import LOCK_NAME, RELEASES, ChecksumMismatch, FetchError, FetchRequest, Lock, describe, fetch
from eta.fetch import transfer
from eta.fetch.sources import BuiltFrom, HubFiles, ImagesOf, Unpack, UrlFile
from eta.fetch.transfer import unpack

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
SERVER_LIFETIME_S = 120  # the server stops by itself after this, whatever happens to the test
pytest.importorskip("pyarrow")


# --------------------------------------------------------------------------- loopback server


class Loopback(ThreadingHTTPServer):
    """Static files by path (query included) and a hub: ``/api/datasets/<repo>/revision/<rev>``
    and ``/datasets/<repo>/resolve/<rev>/<file>``. Range requests are honoured; ``cut[path] = n``
    closes the first GET of ``path`` after ``n`` bytes; ``log`` lists (method, path, Range)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.hub: dict[str, dict] = {}  # repo -> {"sha", "files": {name: bytes}, "lfs": {name: sha256}, "gated"}
        self.cut: dict[str, int] = {}
        self.log: list[tuple[str, str, str | None]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_repo(self, repo: str, sha: str, files: dict[str, bytes], gated: bool = False) -> None:
        lfs = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        self.hub[repo] = {"sha": sha, "files": files, "lfs": lfs, "gated": gated}


class Handler(BaseHTTPRequestHandler):
    server: Loopback
    timeout = 10

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _answer(self, head: bool):
        self.server.log.append((self.command, self.path, self.headers.get("Range")))
        path = urlsplit(self.path).path
        if match := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._hub_info(unquote(match.group(1)), unquote(match.group(2) or "main"))
        if match := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._hub_file(unquote(match.group(1)), unquote(match.group(2)), unquote(match.group(3)), head)
        if self.path not in self.server.files:
            return self._error(404)
        self._send(self.server.files[self.path], head, cut=self.server.cut.pop(self.path, None) if not head else None)

    def _hub_repo(self, repo: str, revision: str) -> dict | None:
        entry = self.server.hub.get(repo)
        if entry is None:
            self._error(404, "RepoNotFound")
        elif entry["gated"]:
            self._error(403, "GatedRepo")
        elif revision not in ("main", entry["sha"]):
            self._error(404, "RevisionNotFound", entry["sha"])
        else:
            return entry
        return None

    def _hub_info(self, repo: str, revision: str):
        entry = self._hub_repo(repo, revision)
        if entry is None:
            return
        siblings = [{"rfilename": name, "size": len(data),
                     "lfs": {"size": len(data), "sha256": entry["lfs"][name], "pointerSize": 130}}
                    for name, data in entry["files"].items()]
        body = json.dumps({"id": repo, "sha": entry["sha"], "private": False, "gated": False,
                           "siblings": siblings}).encode()
        self._send(body, head=False, content_type="application/json")

    def _hub_file(self, repo: str, revision: str, name: str, head: bool):
        entry = self._hub_repo(repo, revision)
        if entry is None:
            return
        if name not in entry["files"]:
            return self._error(404, "EntryNotFound", entry["sha"])
        extra = {"X-Repo-Commit": entry["sha"], "ETag": f'"{entry["lfs"][name]}"'}
        cut = None if head else self.server.cut.pop(urlsplit(self.path).path, None)
        self._send(entry["files"][name], head, extra=extra, cut=cut)

    def _send(self, data: bytes, head: bool, *, cut: int | None = None, extra: dict | None = None,
              content_type: str = "application/octet-stream"):
        start, status = 0, 200
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
            start, status = int(match.group(1)), 206
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def _error(self, code: int, error_code: str | None = None, commit: str | None = None):
        self.send_response(code)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server():
    httpd = Loopback()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    yield httpd
    watchdog.cancel()
    httpd.shutdown()
    httpd.server_close()


# ------------------------------------------------------------------ release-shaped fixtures


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(tmp_path_factory.mktemp("fixtures"))


def files_under(root: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def tarred(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def moved(url: str, base: str) -> str:
    """The loopback path serving ``url``: its host and path (and query) after the base."""
    return base + "/" + url.split("://", 1)[1]


def loopback_table(base: str) -> tuple:
    """The real table, its URLs moved to the loopback server; checksums and sizes reported for
    the real files are dropped (the fixtures are not those files); the CLIP set takes 2 + 2."""
    releases = []
    for release in RELEASES:
        steps = []
        for step in release.steps:
            if isinstance(step, UrlFile):
                step = dataclasses.replace(step, url=moved(step.url, base), sha256=None, size_bytes=None)
            elif isinstance(step, ImagesOf):
                step = dataclasses.replace(step, base_url=moved(step.base_url, base))
            elif isinstance(step, BuiltFrom):
                step = dataclasses.replace(step, per_label=2)
            steps.append(step)
        releases.append(dataclasses.replace(release, steps=tuple(steps)))
    return tuple(releases)


def served_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def step_of(table, key: str, kind, match: str = ""):
    release = next(r for r in table if r.key == key)
    return next(s for s in release.steps if isinstance(s, kind) and match in getattr(s, "url", s.id))


def serve(httpd: Loopback, tree: Path, table) -> None:
    """Put release-shaped copies of the fixture tree where the table's sources point."""
    def put(key: str, match: str, data: bytes) -> None:
        httpd.files[served_path(step_of(table, key, UrlFile, match).url)] = data

    def hub(key: str, files: dict[str, bytes], sha: str | None = None) -> None:
        step = step_of(table, key, HubFiles)
        httpd.add_repo(step.repo, sha or step.revision, {**files, "README.md": b"# fixture card\n"})

    hub("spa-vl", files_under(tree / "spa-vl", ""))
    for path in sorted((tree / "mmsafetybench" / "processed_questions").glob("*.json")):
        put("mmsafetybench", path.name, path.read_bytes())
    put("mmsafetybench", "drive", zipped(files_under(tree / "mmsafetybench" / "imgs", "MM-SafetyBench(imgs)/")))
    sha = step_of(table, "figstep", UrlFile).revision
    put("figstep", "", tarred({f"FigStep-{sha}/src/data/loader.py": b"# not benchmark data\n",
                               **files_under(tree / "figstep", f"FigStep-{sha}/"),
                               f"FigStep-{sha}/README.md": b"fixture\n"}))
    for rel, data in files_under(tree / "cross-modality-attack").items():
        put("cross-modality-attack", rel, data)
    put("advbench", "", (tree / "advbench" / "harmful_behaviors.csv").read_bytes())
    hub("vlsafe", {"VLSafe/harmlessness_examine.jsonl": (tree / "vlsafe" / "harmlessness_examine.jsonl").read_bytes()})
    mme = files_under(tree / "mme" / "MME_Benchmark", "MME_Benchmark_release_version/MME_Benchmark/")
    mme["MME_Benchmark_release_version/eval_tool/calculation.py"] = b"# not benchmark data\n"
    hub("mme", {"MME_Benchmark_release_version.zip": zipped(mme)}, sha="7056f44" + "1" * 33)
    hub("mmbench", files_under(tree / "mmbench-hub"))
    put("scienceqa", "problems.json", (tree / "scienceqa" / "problems.json").read_bytes())
    put("scienceqa", "pid_splits.json", json.dumps({"test": ["5", "12"]}).encode())
    put("scienceqa", "test.zip", zipped(files_under(tree / "scienceqa" / "images" / "test", "test/")))
    for name in ("TextVQA_0.5.1_val.json", "TextVQA_Rosetta_OCR_v0.2_val.json"):
        put("textvqa", name, (tree / "textvqa" / name).read_bytes())
    put("textvqa", "train_val_images.zip", zipped(files_under(tree / "textvqa" / "train_images", "train_images/")))
    vqa = tree / "vqav2"
    put("vqav2", "Questions_Val", zipped({"v2_OpenEnded_mscoco_val2014_questions.json":
                                          (vqa / "v2_OpenEnded_mscoco_val2014_questions.json").read_bytes()}))
    put("vqav2", "Annotations_Val", zipped({"v2_mscoco_val2014_annotations.json":
                                            (vqa / "v2_mscoco_val2014_annotations.json").read_bytes()}))
    put("vqav2", "Questions_Test", zipped({
        "v2_OpenEnded_mscoco_test-dev2015_questions.json":
            (vqa / "v2_OpenEnded_mscoco_test-dev2015_questions.json").read_bytes(),
        "v2_OpenEnded_mscoco_test2015_questions.json": b'{"questions": []}'}))
    for split in ("val2014", "test2015"):
        put("vqav2", f"{split}.zip", zipped(files_under(vqa / split, f"{split}/")))
    coco = served_path(step_of(table, "vlsafe", ImagesOf).base_url)
    for folder, root in (("train2017", tree / "vlsafe"), ("val2014", vqa), ("test2015", vqa)):
        for rel, data in files_under(root / folder, f"{folder}/").items():
            httpd.files[coco + rel] = data
    hub("mmmu-pro", files_under(tree / "mmmu-pro"))


@pytest.fixture
def hub_env(server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(transfer, "RETRY_BACKOFF_S", 0.01)
    for var in [v for v in os.environ if v.startswith("ETA_DATA_")]:
        monkeypatch.delenv(var)
    return server


@pytest.fixture
def table(hub_env, tree):
    table = loopback_table(hub_env.base)
    serve(hub_env, tree, table)
    return table


def gets(server: Loopback) -> list[str]:
    return [path for method, path, _ in server.log if method == "GET"]


def fixture_root_of(tree: Path, name: str) -> Path:
    key = get_info(name).data_key
    return tree / ("mmbench-hub" if key == "mmbench" else key)


FETCHABLE = sorted(info.name for info in list_benchmarks() if info.source != "embedded")


# ------------------------------------------------------------------------------------- tests


def test_every_benchmark_with_a_data_directory_has_a_source():
    keys = {release.key for release in RELEASES}
    assert {get_info(name).data_key for name in FETCHABLE} <= keys
    assert len(keys) == len(RELEASES)


def test_fetch_writes_each_release_in_its_loaders_layout_and_locks_it(table, tree, tmp_path, hub_env):
    notes: list[str] = []
    outcomes = fetch([], FetchRequest(tmp_path), table=table, notify=notes.append)
    assert [o.release for o in outcomes] == [r.key for r in RELEASES]
    for name in FETCHABLE:
        fetched = load_benchmark(name, tmp_path / get_info(name).data_key)
        assert len(fetched) > 0 and fetched.skipped == ()
        if name != "clip-study":  # built from the other releases, not copied from a fixture
            reference = load_benchmark(name, fixture_root_of(tree, name))
            assert [(e.id, e.question, e.reference) for e in fetched] == \
                   [(e.id, e.question, e.reference) for e in reference]
    assert sorted(e.category for e in load_benchmark("clip-study", tmp_path / "clip-study")) == \
        ["safe", "safe", "unsafe", "unsafe"]
    # archives re-rooted and filtered: nothing outside the layout, no download left behind
    assert not (tmp_path / "figstep" / "README.md").exists() and not (tmp_path / "figstep" / "src").exists()
    assert not (tmp_path / "mme" / "eval_tool").exists() and (tmp_path / "mme" / "existence").is_dir()
    assert not (tmp_path / "vqav2" / "v2_OpenEnded_mscoco_test2015_questions.json").exists()
    assert not any(p.name == ".download" for p in tmp_path.rglob("*"))
    assert any("non-commercial" in n and n.startswith("mmsafetybench") for n in notes)
    assert any("EvalAI" in n for n in notes)
    assert "warning: advbench: 3 examples, the paper has 520" in notes  # the fixture is not the release
    assert "vqav2: 3 examples" in notes
    # the lock: the resolved revision of a short pin, and the sha256 of every file written
    mme = Lock.read(tmp_path / "mme", "mme").steps["hub:darkyarding/MME"]
    assert mme.pin == "7056f44" and mme.revision == "7056f44" + "1" * 33
    for release in RELEASES:
        root = tmp_path / release.key
        lock = json.loads((root / LOCK_NAME).read_text())
        written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != LOCK_NAME}
        locked = {rel for step in lock["steps"].values() for rel in step["files"]}
        assert locked == written, release.key
        for step in lock["steps"].values():
            for rel, digest in step["files"].items():
                assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest


def test_second_fetch_verifies_without_downloading(table, tmp_path, hub_env):
    fetch(["figstep", "mme", "vlsafe"], FetchRequest(tmp_path), table=table)
    hub_env.log.clear()
    outcomes = fetch(["figstep", "mme", "vlsafe"], FetchRequest(tmp_path), table=table)
    assert hub_env.log == []
    assert all(o.fetched == [] and o.verified for o in outcomes)
    described = describe(["mme"], FetchRequest(tmp_path), table=table)
    assert "locked: 7056f44" + "1" * 33 in described and "files locked in" in described


def test_corrupt_or_missing_files_are_named_and_fetched_again(table, tmp_path, hub_env):
    request = FetchRequest(tmp_path)
    fetch(["figstep", "spa-vl", "vlsafe"], request, table=table)
    csv = tmp_path / "figstep" / "data/question/safebench.csv"
    parquet = tmp_path / "spa-vl" / "test/harm-00000-of-00001.parquet"
    image = next((tmp_path / "vlsafe" / "train2017").iterdir())
    good = {path: path.read_bytes() for path in (csv, parquet, image)}
    csv.write_text("tampered\n")
    parquet.unlink()
    image.write_bytes(b"not an image")
    notes: list[str] = []
    outcomes = fetch(["figstep", "spa-vl", "vlsafe"], request, table=table, notify=notes.append)
    assert any(str(csv) in n and "sha256 differs" in n for n in notes)
    assert any(str(parquet) in n and "missing" in n for n in notes)
    assert any(str(image) in n for n in notes)
    assert all(path.read_bytes() == data for path, data in good.items())
    assert all(o.fetched for o in outcomes)
    assert load_benchmark("spa-vl-harm", tmp_path / "spa-vl").skipped == ()


def test_download_resumes_after_a_cut_connection(table, tmp_path, hub_env):
    step = step_of(table, "textvqa", UrlFile, "train_val_images.zip")
    path = served_path(step.url)
    size = len(hub_env.files[path])
    hub_env.cut[path] = size // 3
    fetch(["textvqa"], FetchRequest(tmp_path), table=table)
    ranges = [r for method, p, r in hub_env.log if p == path and method == "GET"]
    assert ranges == [None, f"bytes={size // 3}-"]
    assert len(load_benchmark("textvqa", tmp_path / "textvqa")) > 0


def test_hub_download_resumes_after_a_cut_connection(table, tmp_path, hub_env):
    name = "test/harm-00000-of-00001.parquet"
    data = hub_env.hub["sqrti/SPA-VL"]["files"][name]
    path = f"/datasets/sqrti/SPA-VL/resolve/{step_of(table, 'spa-vl', HubFiles).revision}/{name}"
    hub_env.cut[path] = len(data) // 2
    fetch(["spa-vl-harm"], FetchRequest(tmp_path), table=table)
    # the client retries itself (with a Range once a chunk of its own size has arrived)
    assert [m for m, p, _ in hub_env.log if p == path].count("GET") == 2
    assert (tmp_path / "spa-vl" / name).read_bytes() == data


def test_an_interrupted_fetch_resumes_from_its_partial_download(table, tmp_path, hub_env):
    step = step_of(table, "scienceqa", UrlFile, "test.zip")
    data = hub_env.files[served_path(step.url)]
    part = tmp_path / "scienceqa" / ".download" / "test.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])
    fetch(["scienceqa-img"], FetchRequest(tmp_path), table=table)
    assert [r for _, p, r in hub_env.log if p == served_path(step.url)] == ["bytes=100-"]
    assert len(load_benchmark("scienceqa-img", tmp_path / "scienceqa")) > 0


def test_a_finished_partial_download_is_kept_and_a_missing_file_is_named(hub_env, tmp_path):
    hub_env.files["/file.bin"] = data = bytes(range(256)) * 10
    part = tmp_path / "file.bin.part"
    part.write_bytes(data)  # complete, but the run stopped before renaming it
    digest = transfer.download_url(hub_env.base + "/file.bin", tmp_path / "file.bin")
    assert [r for _, _, r in hub_env.log] == [f"bytes={len(data)}-"]  # answered 416: nothing sent
    assert digest == hashlib.sha256(data).hexdigest() and (tmp_path / "file.bin").read_bytes() == data
    with pytest.raises(FetchError, match=re.escape(hub_env.base + "/missing.bin") + ": HTTP 404"):
        transfer.download_url(hub_env.base + "/missing.bin", tmp_path / "missing.bin")
    assert len(hub_env.log) == 2  # a 404 is not retried


def test_a_download_that_changed_upstream_is_an_error_naming_it(table, tmp_path, hub_env):
    fetch(["advbench"], FetchRequest(tmp_path), table=table)
    step = step_of(table, "advbench", UrlFile)
    hub_env.files[served_path(step.url)] = b"goal,target\nsomething else,Sure\n"
    (tmp_path / "advbench" / "harmful_behaviors.csv").write_text("tampered")
    with pytest.raises(ChecksumMismatch, match=re.escape(step.url)):
        fetch(["advbench"], FetchRequest(tmp_path), table=table)


def test_a_reported_checksum_that_differs_is_reported_and_recorded(table, tmp_path, hub_env):
    step = step_of(table, "advbench", UrlFile)
    release = dataclasses.replace(next(r for r in table if r.key == "advbench"),
                                  steps=(dataclasses.replace(step, sha256="0" * 64),))
    notes: list[str] = []
    fetch(["advbench"], FetchRequest(tmp_path), table=(release,), notify=notes.append)
    assert [p for m, p, _ in hub_env.log if m == "GET"] == [served_path(step.url)] * 2
    assert any(n.startswith("warning:") and "0" * 64 in n for n in notes)
    locked = Lock.read(tmp_path / "advbench", "advbench").steps[step.id].sha256
    assert locked == hashlib.sha256((tmp_path / "advbench" / "harmful_behaviors.csv").read_bytes()).hexdigest()


def test_hub_file_not_matching_the_hubs_checksum_is_refused(table, tmp_path, hub_env):
    repo = hub_env.hub["sqrti/SPA-VL"]
    repo["lfs"]["test/harm-00000-of-00001.parquet"] = "f" * 64
    with pytest.raises(ChecksumMismatch, match="test/harm-00000-of-00001.parquet"):
        fetch(["spa-vl-harm"], FetchRequest(tmp_path), table=table)


def test_gated_hub_repo_says_how_to_get_access(table, tmp_path, hub_env):
    hub_env.hub["MMMU/MMMU_Pro"]["gated"] = True
    with pytest.raises(FetchError, match="gated.*HF_TOKEN"):
        fetch(["mmmu-pro-vision"], FetchRequest(tmp_path), table=table)


def test_only_needed_fetches_the_images_of_the_seeded_subset(table, tree, tmp_path, hub_env):
    fetch(["vqav2"], FetchRequest(tmp_path, only_needed=True, limit=1, seed=0), table=table)
    assert not any(p.endswith(("val2014.zip", "test2015.zip")) for p in gets(hub_env))
    expected = load_benchmark("vqav2", fixture_root_of(tree, "vqav2"), limit=1, seed=0)
    wanted = {e.image.name for e in expected}
    assert {p.name for p in (tmp_path / "vqav2" / "val2014").iterdir()} == wanted
    assert not any((tmp_path / "vqav2" / "test2015").iterdir())  # vqav2-testdev was not asked for
    fetched = load_benchmark("vqav2", tmp_path / "vqav2", limit=1, seed=0)
    assert [e.id for e in fetched] == [e.id for e in expected]


def test_unpack_refuses_unsafe_and_foreign_archives(tmp_path):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(zipped({"../evil.txt": b"x"}))
    with pytest.raises(FetchError, match="unsafe member"):
        unpack(archive, tmp_path / "out", Unpack())
    archive.write_bytes(zipped({"other/file.txt": b"x"}))
    with pytest.raises(FetchError, match="no folder 'train_images'"):
        unpack(archive, tmp_path / "out", Unpack(anchor="train_images"))
    archive.write_bytes(zipped({"train_images/a.jpg": b"x" * 100})[:-30])
    with pytest.raises(FetchError, match=re.escape(str(archive))):
        unpack(archive, tmp_path / "out", Unpack(anchor="train_images"))


def test_dry_run_lists_every_benchmark_with_source_revision_size_and_licence(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path))
    assert cli.main(["data", "fetch", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # nothing written
    blocks = out.split("\n\n")[1:]
    assert len(blocks) == len(RELEASES)
    for block in blocks:
        for field in ("benchmarks:", "source:", "revision:", "size:", "licence:"):
            assert f"  {field}" in block, (field, block)
    listed = {b for block in blocks for b in re.search(r"benchmarks: (.*)", block).group(1).split(", ")}
    assert set(FETCHABLE) <= listed
    assert "NON-COMMERCIAL" in out and "EvalAI" in out
    assert "status:     not fetched" in out
    vlsafe = describe(["vlsafe"], None)
    assert vlsafe.count("source:") == 2 and "000d8016277caffa635cbe9ae12ef7beea45dbbe" in vlsafe


def test_cli_names_unknown_and_embedded_benchmarks(capsys, tmp_path):
    assert cli.main(["data", "fetch", "no-such-set", "--dir", str(tmp_path)]) == 1
    assert "no-such-set" in capsys.readouterr().err
    assert cli.main(["data", "fetch", "advbench-embedded", "--dir", str(tmp_path)]) == 1
    assert "needs no download" in capsys.readouterr().err


def test_preflight_points_at_the_fetch_command(monkeypatch, tmp_path):
    from eta.preflight import benchmark_missing

    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path))
    assert "\nFetch it: python -m eta data fetch figstep-suffix;" in benchmark_missing("figstep-suffix").how
    monkeypatch.delenv("ETA_DATA_DIR")
    assert "python -m eta data fetch vlsafe --dir DIR" in benchmark_missing("vlsafe").how
    assert benchmark_missing("advbench-embedded") is None

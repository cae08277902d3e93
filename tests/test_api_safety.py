"""API safety: size and pixel limits, path traversal, the API key, CORS and origins, the bind
address, safe deserialisation, and model files verified by hash before loading.

Requests go to a real server whose models load once for the module; what is enrolled is real
faces of the sample photos, a different photo for each (one photo shows one person).
"""

from __future__ import annotations

import ast
import io
import pickle
import shutil
from collections.abc import Collection
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_inputs import bomb_png

from facesuite import config, integrity
from facesuite.cli import build_parser, main
from facesuite.integrity import ModelIntegrityError
from facesuite.serve import create_app
from facesuite.serve.security import API_KEY_ENV, API_KEY_HEADER, MUTATING_ROUTES

SRC = Path(__file__).resolve().parents[1] / "src" / "facesuite"
LIMIT = 256 * 1024
KEY = "correct horse battery staple"
# POST routes that only compute an answer from the uploaded images; every other POST must be in
# MUTATING_ROUTES, so a new route cannot slip past the API key unclassified.
READ_ONLY_POSTS = {"/analyze", "/verify", "/explain", "/gallery/identify", "/cluster"}


def png(width: int = 32, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "grey").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def analysis():
    """The models, loaded once for the module's servers (identity only: no gender, no age)."""
    from facesuite import FaceAnalysis

    # No detection cache: its SQLite connection belongs to one thread, and each server has its own.
    models = FaceAnalysis(gender=None, age=None, use_cache=False)
    yield models
    models.gallery = None  # each server opened its own gallery, on its own thread


PHOTOS = sorted((Path(__file__).resolve().parents[1] / "samples" / "people").glob("*/*.jpg"))


def photo(index: int = 0) -> tuple[str, bytes, str]:
    """An upload of the ``index``-th sample photo of a person (each index another photo)."""
    return PHOTOS[index].name, PHOTOS[index].read_bytes(), "image/jpeg"


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "data" / "people").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path


def make_client(work: Path, analysis, base_url: str = "http://testserver", **options) -> TestClient:
    app = create_app(gallery=work / "gallery", max_upload_bytes=LIMIT, work_dir=work / "serve",
                     eval_roots=[work / "data"], **options)
    service = app.state.service
    service._analysis, service.loaded = analysis, True  # the module's models, loaded once
    return TestClient(app, base_url=base_url)


def tree(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


# ---------------------------------------------------------------- limits


def test_streamed_body_over_the_limit_is_413(work: Path, analysis) -> None:
    client = make_client(work, analysis)

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(LIMIT // 4096 + 2):
            yield b"\0" * 4096

    response = client.post("/analyze", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "too large" in response.json()["error"]


def test_pixel_limit_answers_413_without_decoding(work: Path, analysis) -> None:
    response = make_client(work, analysis).post("/analyze", files={"image": ("bomb.png", bomb_png(), "image/png")})
    assert response.status_code == 413
    assert response.json()["error"].startswith("bomb.png: image too large")


# ---------------------------------------------------------------- path traversal


@pytest.mark.parametrize("name", ["../../../../pwned.jpg", "/tmp/pwned.jpg", "..\\..\\pwned.jpg", "sub/../../pwned.jpg"])
def test_upload_names_never_become_paths(work: Path, name: str, analysis) -> None:
    client = make_client(work, analysis)
    before = tree(work)
    response = client.post("/gallery/enroll", data={"identity": "ann"}, files={"image": (name, *photo()[1:])})
    assert response.status_code == 200, response.text
    assert not Path("/tmp/pwned.jpg").exists() and not (work.parent / "pwned.jpg").exists()
    # Written: the gallery, and the server's picture of the face (in its work folder), nothing else.
    assert {p.relative_to(work).parts[0] for p in tree(work) - before} == {"gallery", "serve"}
    listing = client.get("/gallery").json()
    assert listing["identities"] == [{"identity": "ann", "faces": 1, "thumbnail": True}]
    # The embedders that can search it, among them the one the server embeds with.
    assert analysis.embedder.name in listing["embedders"] and listing["space"] == analysis.embedder.space
    assert client.get("/gallery/thumbnail", params={"identity": "ann"}).status_code == 200
    assert {p.relative_to(work).parts[0] for p in tree(work) - before} == {"gallery", "serve"}


def test_identity_names_are_data_not_paths(work: Path, analysis) -> None:
    client = make_client(work, analysis)
    for index, identity in enumerate(("../../escaped", "/etc/passwd", "..", "a/b")):
        # A photo of each (one photo shows one person).
        response = client.post("/gallery/enroll", data={"identity": identity}, files={"image": photo(index)})
        assert response.status_code == 200, response.text
    assert {p.name for p in (work / "gallery").iterdir()} <= {"gallery.sqlite", "gallery.sqlite-wal", "gallery.sqlite-shm", "index.faiss"}
    assert not (work.parent / "escaped").exists() and not (work / "escaped").exists()
    assert {e["identity"] for e in client.get("/gallery").json()["identities"]} == {"../../escaped", "/etc/passwd", "..", "a/b"}


def test_evaluations_read_only_under_their_roots(work: Path, analysis) -> None:
    client = make_client(work, analysis)
    (work / "data" / "link").symlink_to(work / "outside", target_is_directory=True)
    for folder in ("/etc", str(work / "outside"), str(work / "data" / ".." / "outside"), str(work / "data" / "link"), "~"):
        response = client.post("/jobs/recognition", json={"folder": folder})
        assert response.status_code == 403, (folder, response.text)
        assert "outside the folders this server may read" in response.json()["error"]
    # Inside the root the request gets past the check, to the layout check (no images there).
    inside = client.post("/jobs/recognition", json={"folder": str(work / "data")})
    assert inside.status_code == 422 and "no images" in inside.json()["error"]


def test_split_file_outside_the_roots_is_refused(work: Path, analysis) -> None:
    people = work / "data" / "people"
    for name in ("ann", "bo"):
        (people / name / "distortion").mkdir(parents=True)
        (people / name / "a.png").write_bytes(png())
        (people / name / "distortion" / "a_blurred.png").write_bytes(png())
    (work / "outside" / "split.txt").write_text("ann\nbo\n")
    response = make_client(work, analysis).post("/jobs/recognition", json={"folder": str(people), "split": str(work / "outside" / "split.txt")})
    assert response.status_code == 403 and "split.txt" in response.json()["error"]


@pytest.mark.parametrize("url", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e%2f__init__.py",
                                 "/jobs/..%2f..%2fetc/report"])
def test_no_file_outside_static_is_served(work: Path, url: str, analysis) -> None:
    response = make_client(work, analysis).get(url)
    assert response.status_code == 404 and "create_app" not in response.text


# ---------------------------------------------------------------- API key, origins, CORS, bind address


def test_api_key_guards_every_mutating_route_before_reading_the_body(work: Path, analysis) -> None:
    client = make_client(work, analysis, api_key=KEY)
    writes = {(method, route.path) for route in client.app.routes for method in getattr(route, "methods", ()) if method not in ("GET", "HEAD")}
    assert writes == {("POST", path) for path in READ_ONLY_POSTS} | MUTATING_ROUTES
    for method, path in MUTATING_ROUTES:
        for headers in ({}, {API_KEY_HEADER: "wrong"}, {"Authorization": "Bearer wrong"}):
            # A body over the upload limit: 401 rather than 413 shows the key is checked first.
            response = client.request(method, path, content=b"\0" * (LIMIT + 1), headers=headers)
            assert response.status_code == 401 and API_KEY_HEADER in response.json()["error"], (path, headers)
    enroll = {"data": {"identity": "ann"}, "files": {"image": photo(0)}}
    assert client.post("/gallery/enroll", headers={API_KEY_HEADER: KEY}, **enroll).status_code == 200
    other = {"data": {"identity": "ann"}, "files": {"image": photo(1)}}  # a second photo
    assert client.post("/gallery/enroll", headers={"Authorization": f"Bearer {KEY}"}, **other).status_code == 200
    assert client.delete("/gallery", params={"identity": "ann"}).status_code == 401
    removed = client.delete("/gallery", params={"identity": "ann"}, headers={API_KEY_HEADER: KEY})
    assert removed.status_code == 200 and removed.json()["removed"] == 2
    assert client.delete("/gallery", params={"identity": "ann"}, headers={API_KEY_HEADER: KEY}).status_code == 404
    # Read-only routes stay open.
    assert client.get("/gallery").status_code == 200
    assert client.post("/analyze", files={"image": ("t.jpg", b"text", "image/jpeg")}).status_code == 415


def test_cross_origin_writes_are_refused_and_no_cors_headers_are_sent(work: Path, analysis) -> None:
    client = make_client(work, analysis)
    evil = {"Origin": "http://evil.example"}
    enroll = {"data": {"identity": "ann"}, "files": {"image": photo()}}
    response = client.post("/gallery/enroll", headers=evil, **enroll)
    assert response.status_code == 403 and "cross-origin" in response.json()["error"]
    assert client.post("/gallery/enroll", headers={"Origin": "null"}, **enroll).status_code == 403
    assert client.post("/gallery/enroll", headers={"Origin": "http://testserver"}, **enroll).status_code == 200
    preflight = client.options("/gallery/enroll", headers={**evil, "Access-Control-Request-Method": "POST"})
    for answer in (preflight, client.get("/gallery", headers=evil), response):
        assert not any(h.lower().startswith("access-control-") for h in answer.headers)


def test_loopback_server_refuses_foreign_host_headers(work: Path, analysis) -> None:
    client = make_client(work, analysis, allowed_hosts=["127.0.0.1", "localhost"], base_url="http://127.0.0.1:8000")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    rebound = client.get("/gallery", headers={"Host": "evil.example:8000"})
    assert rebound.status_code == 400 and "Host" in rebound.json()["error"]


def test_serve_binds_loopback_by_default_and_reads_the_key_from_the_environment(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert main(["serve", "--gallery", str(work / "gallery"), "--eval-root", str(work / "data")]) == 0
    assert started["host"] == "127.0.0.1"
    client = TestClient(started["app"], base_url="http://127.0.0.1:8000")
    assert client.post("/gallery/enroll", data={"identity": "ann"}).status_code == 401
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_serve_on_a_taken_port_is_one_line_and_no_address(work: Path, capsys) -> None:
    """A port already taken ends `serve` before it prints the dashboard's address: one line, exit 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port), "--gallery", str(work / "gallery"), "--eval-root", str(work / "data")])
    captured = capsys.readouterr()
    assert code == 2 and "dashboard" not in captured.out
    assert captured.err.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in captured.err


# ---------------------------------------------------------------- deserialisation


# Callees (fully qualified) that can run code from the bytes they read, whatever the arguments.
ALWAYS_UNSAFE = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load", "dill.load", "dill.loads",
    "cloudpickle.load", "cloudpickle.loads", "marshal.load", "marshal.loads", "shelve.open",
    "yaml.load", "yaml.unsafe_load", "builtins.eval", "builtins.exec",
}
# Modules whose every reader can run code from what it reads. A module may import one only for
# its exceptions (catching what torch.load raises on a damaged file), or as the base of a
# restricted unpickler named in RESTRICTED_UNPICKLERS; any other use is reported, called or not
# (a subclass's ``.load()`` or ``read = pickle.loads`` is no call the call rule can see).
PICKLE_MODULES = {"pickle", "_pickle", "marshal", "dill", "cloudpickle", "shelve", "joblib"}
PICKLE_EXCEPTIONS = {"PickleError", "PicklingError", "UnpicklingError"}
# The unpicklers allowed, by module and class, and why each is safe.
RESTRICTED_UNPICKLERS = {
    "data.py": {
        "_PairBinUnpickler": "a verification .bin (LFW, CFP-FP, AgeDB-30... as the face recognition field ships "
                             "them) is a pickle; its find_class refuses every class and callable but "
                             "_codecs.encode, which only rebuilds bytes, so no file can run code through it",
    },
}


def _literal(node: ast.expr | None, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _unsafe_loads(tree: ast.Module, unpicklers: Collection[str] = ()) -> list[str]:
    """What in ``tree`` could run code from a file's contents: calls, and uses of a pickle-like
    module (an import used for anything but its exceptions, an ``Unpickler`` subclass) other than
    the restricted ``unpicklers`` named.

    Callees are resolved through the module's imports to fully qualified names, so an alias
    (``import pickle as pk``, ``from torch import load``, ``import numpy``) cannot hide a call
    that the plain spelling would show. One namespace per module, imports in any scope counted
    everywhere: a name imported anywhere as ``torch.load`` is suspect everywhere in that module
    (false alarms only, never a miss).
    """
    bound: dict[str, str] = {}  # local name -> what it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds `a`; `import a.b as c` binds c to a.b
                local = alias.asname or alias.name.split(".")[0]
                bound[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            # Relative imports are our own modules: a leading dot keeps them from matching.
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{module}.{alias.name}"

    def qualified(func: ast.expr) -> str | None:
        """`pk.loads` -> `pickle.loads`; None for calls on values (`model.eval()`) and locals."""
        if isinstance(func, ast.Attribute):
            owner = qualified(func.value)
            return f"{owner}.{func.attr}" if owner else None
        if isinstance(func, ast.Name):
            if func.id in bound:
                return bound[func.id]
            # Unbound eval/exec are the builtins; any other unbound name is a local (`def load`).
            return f"builtins.{func.id}" if func.id in {"eval", "exec"} else None
        return None

    def pickle_like(name: str | None) -> bool:
        return name is not None and name.split(".")[0] in PICKLE_MODULES

    found = []
    unpickler_bases: set[int] = set()  # nodes of Unpickler subclasses' bases: allowed, or reported as such
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if (name := qualified(base)) is not None and name.rpartition(".")[2] == "Unpickler":
                    unpickler_bases |= {id(part) for part in ast.walk(base)}
                    if node.name not in unpicklers:
                        found.append(f"{node.name} subclasses {name} (line {node.lineno})")
    attribute_of = {id(node.value): node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and pickle_like(node.module):
            if readers := [alias.name for alias in node.names if alias.name not in PICKLE_EXCEPTIONS]:
                found.append(f"from {node.module} import {', '.join(readers)} (line {node.lineno})")
        elif (isinstance(node, ast.Name) and bound.get(node.id) in PICKLE_MODULES and id(node) not in unpickler_bases
              and attribute_of.get(id(node)) not in PICKLE_EXCEPTIONS):
            found.append(f"{bound[node.id]} used for more than its exceptions (line {node.lineno})")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (name := qualified(node.func)) is None:
            continue
        keywords = {k.arg: k.value for k in node.keywords}  # `**kwargs` has arg None: never literal True
        if name == "torch.load" and not _literal(keywords.get("weights_only"), True):
            found.append(f"torch.load without weights_only=True (line {node.lineno})")
        elif name == "numpy.load":
            allow = keywords.get("allow_pickle", node.args[2] if len(node.args) > 2 else None)
            if allow is not None and not _literal(allow, False):  # absent: numpy's default, False
                found.append(f"numpy.load with allow_pickle (line {node.lineno})")
        elif name in ALWAYS_UNSAFE:
            found.append(f"{name} (line {node.lineno})")
    return found


def test_no_code_can_come_from_a_file() -> None:
    problems = {}
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if found := _unsafe_loads(ast.parse(path.read_text(encoding="utf-8")), RESTRICTED_UNPICKLERS.get(module, {})):
            problems[module] = found
    assert problems == {}


class CallsPrint:
    """What a malicious pickle does: have the reader call a function of the pickle's choosing."""

    def __reduce__(self):
        return print, ("this ran",)


def test_each_restricted_unpickler_allowed_is_there_and_refuses_classes(capsys: pytest.CaptureFixture[str]) -> None:
    """The scan's allowance names classes that exist, and the one we have refuses a pickle that
    would call a function (as every malicious pickle must)."""
    from facesuite.data import _PairBinUnpickler

    for module, classes in RESTRICTED_UNPICKLERS.items():
        defined = {node.name for node in ast.walk(ast.parse((SRC / module).read_text(encoding="utf-8")))
                   if isinstance(node, ast.ClassDef)}
        assert set(classes) <= defined, module
    calls_print = pickle.dumps(CallsPrint(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"builtin__\.print, which a pair \.bin does not"):
        _PairBinUnpickler(io.BytesIO(calls_print), encoding="bytes").load()
    assert capsys.readouterr().out == ""


def test_an_allowed_unpickler_allows_nothing_else() -> None:
    restricted = "import pickle\nclass Safe(pickle.Unpickler):\n    pass\nerrors = (pickle.UnpicklingError,)\n"
    assert _unsafe_loads(ast.parse(restricted), {"Safe"}) == []
    assert _unsafe_loads(ast.parse(restricted)) == ["Safe subclasses pickle.Unpickler (line 2)"]
    assert _unsafe_loads(ast.parse(restricted + "read = pickle.loads\n"), {"Safe"}) == [
        "pickle used for more than its exceptions (line 5)"]
    assert _unsafe_loads(ast.parse(restricted + "class Other(pickle.Unpickler):\n    pass\n"), {"Safe"}) == [
        "Other subclasses pickle.Unpickler (line 5)"]


UNSAFE_FORMS = {
    "torch.load": "import torch\ntorch.load(p)",
    "torch.load weights_only=False": "import torch\ntorch.load(p, weights_only=False)",
    "torch.load weights_only variable": "import torch\ntorch.load(p, weights_only=flag)",
    "from torch import load": "from torch import load\nload(p)",
    "from torch import load as alias": "from torch import load as read\nread(p, weights_only=False)",
    "import torch as alias": "import torch as t\nt.load(p)",
    "np.load allow_pickle": "import numpy as np\nnp.load(p, allow_pickle=True)",
    "numpy under another name": "import numpy as xp\nxp.load(p, allow_pickle=True)",
    "numpy.load": "import numpy\nnumpy.load(p, allow_pickle=True)",
    "from numpy import load": "from numpy import load\nload(p, allow_pickle=True)",
    "np.load allow_pickle positional": "import numpy as np\nnp.load(p, None, True)",
    "pickle.load": "import pickle\npickle.load(f)",
    "pickle.loads": "import pickle\npickle.loads(b)",
    "import pickle as alias": "import pickle as pk\npk.loads(b)",
    "from pickle import loads": "from pickle import loads\nloads(b)",
    "pickle.Unpickler": "from pickle import Unpickler\nUnpickler(f).load()",
    "joblib.load": "import joblib\njoblib.load(p)",
    "dill.load": "import dill\ndill.load(f)",
    "dill.loads": "from dill import loads\nloads(b)",
    "cloudpickle.load": "import cloudpickle\ncloudpickle.load(f)",
    "cloudpickle.loads": "import cloudpickle as cp\ncp.loads(b)",
    "marshal.load": "import marshal\nmarshal.load(f)",
    "marshal.loads": "from marshal import loads as unmarshal\nunmarshal(b)",
    "shelve.open": "import shelve\nshelve.open(p)",
    "yaml.load": "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "yaml.unsafe_load": "from yaml import unsafe_load\nunsafe_load(text)",
    "eval": "eval(text)",
    "exec": "exec(text)",
    "builtins.exec": "import builtins\nbuiltins.exec(text)",
    "inside a function": "def f(p):\n    import torch\n    return torch.load(p)",
    "an Unpickler subclass": "import pickle\nclass Reader(pickle.Unpickler):\n    pass\nReader(f).load()",
    "an Unpickler subclass, imported by name": "from pickle import Unpickler as U\nclass Reader(U):\n    pass",
    "pickle.loads as a value": "import pickle\nread = pickle.loads\nread(b)",
    "marshal through getattr": "import marshal\ngetattr(marshal, 'loads')(b)",
    "from _pickle import loads": "from _pickle import loads",
}
SAFE_FORMS = {
    "torch.load weights_only=True": "import torch\ntorch.load(p, map_location='cpu', weights_only=True)",
    "from torch import load, weights_only=True": "from torch import load\nload(p, weights_only=True)",
    "np.load": "import numpy as np\nnp.load(p)",
    "np.load allow_pickle=False": "import numpy as np\nnp.load(p, allow_pickle=False)",
    "a local function named load": "import torch\ndef load(p):\n    return open(p).read()\nload(p)",
    "a method named load": "import torch\nmodel.load(p)\nself.loader.load(p)",
    "model.eval()": "import torch\nmodel = torch.nn.Linear(1, 1)\nmodel.eval()",
    "json.load": "import json\njson.load(f)",
    "our own load": "from facesuite.classify.distortion import DistortionDetector\nfrom .io import load\nDistortionDetector.load(p)\nload(p)",
    "pickle for its exceptions": "import pickle\nerrors = (OSError, pickle.UnpicklingError)",
    "from pickle import an exception": "from pickle import UnpicklingError\nerrors = (UnpicklingError,)",
}


@pytest.mark.parametrize("code", UNSAFE_FORMS.values(), ids=UNSAFE_FORMS.keys())
def test_the_unsafe_load_scan_can_fail(code: str) -> None:
    assert _unsafe_loads(ast.parse(code)) != []


@pytest.mark.parametrize("code", SAFE_FORMS.values(), ids=SAFE_FORMS.keys())
def test_the_unsafe_load_scan_passes_safe_loads(code: str) -> None:
    assert _unsafe_loads(ast.parse(code)) == []


# ---------------------------------------------------------------- model integrity


def test_manifest_matches_the_shipped_model_files() -> None:
    # Fails when a model file changes without `python -m facesuite.integrity --write`.
    assert integrity.read_manifest() == integrity.current_entries()
    assert integrity.main([]) == 0


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture()
def models_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped models folder, with its own manifest, standing in for the real one."""
    copy = tmp_path / "models"
    shutil.copytree(config.MODELS_DIR, copy)
    monkeypatch.setattr(config, "MODELS_DIR", copy)
    integrity.write_manifest()
    return copy


def test_tampered_shipped_model_is_refused(models_copy: Path) -> None:
    from facesuite.classify.distortion import DistortionDetector

    DistortionDetector.load(models_copy / "distortion")  # intact: loads
    weights = models_copy / "distortion" / "weights.pt"
    _flip_one_byte(weights)
    with pytest.raises(ModelIntegrityError, match="does not match its recorded SHA-256") as error:
        DistortionDetector.load(models_copy / "distortion")
    assert str(weights) in str(error.value)


def test_a_tampered_model_stops_the_cli_with_one_line_naming_it(models_copy: Path, samples: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged installation is neither bad input (exit 2, a skip) nor a bug (a fault log): exit 1, one line."""
    monkeypatch.setenv("FACESUITE_HOME", str(tmp_path / "home"))
    weights = models_copy / "gender" / "weights.npz"
    _flip_one_byte(weights)
    photo = samples / "photos" / "Colin_Powell_0003.jpg"
    code = main(["predict", "gender", str(photo), "--model", str(models_copy / "gender"), "--csv", str(tmp_path / "g.csv")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"facesuite: error: {weights}: ") and "SHA-256" in lines[0]
    assert not (config.user_home() / "logs").exists()  # no fault logged: nothing in facesuite went wrong


def test_serve_refuses_to_start_on_a_tampered_model(models_copy: Path, tmp_path: Path) -> None:
    """The server would load its models after it started listening; a changed file stops it before."""
    import subprocess
    import sys

    from serve_process import free_port

    weights = models_copy / "distortion" / "model.onnx"
    _flip_one_byte(weights)
    # The models_copy fixture's way, in a process of its own: config.MODELS_DIR pointed at the copy.
    serve = ("import sys\nfrom pathlib import Path\nfrom facesuite import config\n"
             f"config.MODELS_DIR = Path({str(models_copy)!r})\n"
             "from facesuite.cli import main\n"
             f"sys.exit(main(['serve', '--port', '{free_port()}', '--gallery', {str(tmp_path / 'g')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", serve], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"facesuite: error: {weights}: model file changed: it differs from the manifest (modified or corrupt: reinstall facesuite)"]
    assert "dashboard:" not in result.stdout


def test_an_intact_model_file_is_hashed_once_and_a_changed_one_again(models_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = []
    real_hash = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: hashed.append(path) or real_hash(path))
    weights = models_copy / "gender" / "weights.npz"
    integrity.verify_model_file(weights)
    integrity.verify_model_file(weights)  # the gender model and its head both load this folder
    assert hashed == [weights]
    _flip_one_byte(weights)
    with pytest.raises(ModelIntegrityError, match="does not match its recorded SHA-256"):
        integrity.verify_model_file(weights)


def test_unrecorded_file_in_a_shipped_folder_is_refused(models_copy: Path) -> None:
    from facesuite.classify.gender import GenderModel

    (models_copy / "gender" / "extra.npz").write_bytes(b"")
    with pytest.raises(ModelIntegrityError, match="not in the manifest"):
        GenderModel.load(models_copy / "gender")


def test_packaged_weights_are_checked(models_copy: Path) -> None:
    """The MTCNN export reads facenet-pytorch's installed weights through the manifest too."""
    from facesuite.detect.mtcnn_nets import weights_file

    assert weights_file("pnet").is_file()
    manifest = models_copy / integrity.MANIFEST_NAME
    text = manifest.read_text()
    entry = next(line for line in text.splitlines() if line.endswith("facenet_pytorch/data/pnet.pt"))
    manifest.write_text(text.replace(entry, "0" * 64 + entry[64:]))
    with pytest.raises(ModelIntegrityError, match="pnet.pt"):
        weights_file("pnet")


def test_a_model_the_user_names_is_their_choice(models_copy: Path, tmp_path: Path) -> None:
    from facesuite.classify.distortion import DistortionDetector

    mine = tmp_path / "my-model"
    shutil.copytree(models_copy / "distortion", mine)
    (mine / "notes.json").write_text("{}")  # would be refused in a shipped folder
    DistortionDetector.load(mine)

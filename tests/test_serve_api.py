"""alexnet serve's API against the real app, a real tiny trained model and its real index (no mocks): every view,
then abuse (non-images, oversized bodies, bombs, path-traversal ids, tokens, hosts, 50 concurrent requests, a
timeout), each followed by a request that shows the server still answers."""

import concurrent.futures
import io
import re

import pytest
from PIL import Image

pytest.importorskip("fastapi")

CAP = 300_000  # the upload cap of the module's app, in bytes
TOKEN = "a-test-token-0123456789"


@pytest.fixture(scope="module")
def served(trained):
    from fastapi.testclient import TestClient

    from alexnet.inspect.loaded import open_run
    from alexnet.serve.app import Limits, create_app

    run = open_run(trained[1])
    app = create_app([run], limits=Limits(max_upload_bytes=CAP))
    client = TestClient(app, base_url="http://127.0.0.1")
    return run, app, client


def png(size=(48, 40), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def uri_image(uri: str) -> Image.Image:
    import base64

    assert uri.startswith("data:image/png;base64,")
    return decode(base64.b64decode(uri.split(",", 1)[1]))


def alive(client) -> None:
    assert client.get("/api/health").json() == {"ok": True}


def test_runs_describe_layers_with_shapes_and_formulas(served):
    run, _, client = served
    (info,) = client.get("/api/runs").json()["runs"]
    assert info["id"] == "run" and info["classes"] == ["cat", "dog"] and info["has_index"]
    layers = {entry["layer"]: entry for entry in info["layers"]}
    assert layers["conv1"]["shape"] == [12, 15, 15]
    assert layers["pool5"]["formula"] == "floor((3 - 3) / 2) + 1 = 1"
    assert info["conv_layers"] == ["conv1", "conv2", "conv3", "conv4", "conv5"]


def test_predict_a_validation_image(served):
    run, app, client = served
    answer = client.get("/api/runs/run/predict", params={"image": "val:4"}).json()
    probs = [t["prob"] for t in answer["top"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 2
    index = app.state.runs["run"].index
    assert probs[0] == pytest.approx(float(index["val_probs"][index.val_row_of(4)].max()), abs=1e-5)
    assert answer["true_label"] == run.class_names[run.bundle.val.targets[4]]
    assert [a["layer"] for a in answer["activations"]] == run.spatial_layers()
    for a in answer["activations"]:
        img = uri_image(a["png"])
        assert img.size == (a["grid"]["width"], a["grid"]["height"])
        assert a["grid"]["channels"] == a["shape"][0]
    assert uri_image(answer["gradcam"]["png"]).size == (67, 67) and answer["gradcam"]["layer"] == "relu5"
    distances = [n["distance"] for n in answer["neighbours"]]
    assert len(distances) == 8 and distances == sorted(distances)
    assert all(re.fullmatch(r"train:\d+", n["image"]) for n in answer["neighbours"])


def test_a_training_image_is_not_its_own_neighbour(served):
    _, _, client = served
    answer = client.get("/api/runs/run/predict", params={"image": "train:3"}).json()
    assert "train:3" not in [n["image"] for n in answer["neighbours"]]


def test_upload_then_predict_and_gradcam_of_any_class(served):
    _, _, client = served
    up = client.post("/api/runs/run/upload", content=png(), headers={"X-Filename": "red.png"}).json()
    assert re.fullmatch(r"upload:[0-9a-f]{32}", up["image"]) and up["size"] == [48, 40]
    answer = client.get("/api/runs/run/predict", params={"image": up["image"]}).json()
    assert {t["label"] for t in answer["top"]} == {"cat", "dog"} and answer["true_label"] is None
    for target in ("0", "dog"):
        r = client.get("/api/runs/run/gradcam", params={"image": up["image"], "class": target})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and decode(r.content).size == (67, 67)
    r = client.get("/api/runs/run/gradcam", params={"image": up["image"], "class": "horse"})
    assert r.status_code == 400 and "no class 'horse'" in r.json()["error"]
    r = client.get("/api/runs/run/image/" + up["image"])
    assert r.status_code == 200 and decode(r.content).size == (67, 67)


def test_a_multipart_form_upload_is_the_same_image_as_the_raw_body(served):
    _, _, client = served
    image = png(colour=(20, 160, 90))
    raw = client.post("/api/runs/run/upload", content=image, headers={"X-Filename": "green.png"}).json()
    form = client.post("/api/runs/run/upload", files={"file": ("green.png", image, "image/png")},
                       data={"note": "a text field before the file is skipped"})
    assert form.status_code == 200, form.text
    assert form.json()["name"] == "green.png" and form.json()["size"] == raw["size"] == [48, 40]
    a, b = (client.get("/api/runs/run/predict", params={"image": up["image"]}).json()["top"]
            for up in (raw, form.json()))
    assert [t["label"] for t in a] == [t["label"] for t in b]
    assert [t["prob"] for t in a] == pytest.approx([t["prob"] for t in b], abs=1e-6)
    only = client.post("/api/runs/run/upload", files={"photo": ("only.png", image, "image/png")})  # any one file
    assert only.status_code == 200 and only.json()["name"] == "only.png"


def test_curl_f_uploads_to_the_running_server(served, tmp_path):
    import json
    import shutil
    import subprocess

    from alexnet.serve.app import Background, create_app

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl on this machine")
    photo = tmp_path / "x.jpg"
    Image.new("RGB", (50, 30), (10, 20, 200)).save(photo, "JPEG")
    server = Background(create_app([served[0]]))
    try:
        out = subprocess.run([curl, "-sS", "-F", f"file=@{photo}", f"{server.url}/api/runs/run/upload"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    finally:
        server.stop()
    up = json.loads(out)
    assert up["name"] == "x.jpg" and up["size"] == [50, 30] and up["image"].startswith("upload:")


def test_filters_and_units(served):
    _, _, client = served
    f = client.get("/api/runs/run/filters").json()
    assert f["grid"]["channels"] == 12 and f["grid"]["cell_w"] == 11 and uri_image(f["png"]).width > 0
    u = client.get("/api/runs/run/units", params={"layer": "conv3", "channel": 5}).json()
    values = [i["value"] for i in u["images"]]
    assert len(values) == 6 and values == sorted(values, reverse=True)  # 6 validation images: all of them rank
    for i in u["images"]:
        left, top, w, h = i["box"]
        assert 0 <= left < 1 and 0 <= top < 1 and 0 < w <= 1 and 0 < h <= 1
    assert client.get("/api/runs/run/units", params={"layer": "conv3", "channel": 48}).status_code == 400
    assert client.get("/api/runs/run/units", params={"layer": "fc7", "channel": 0}).status_code == 400


def test_confusion_cells_and_map(served):
    run, _, client = served
    c = client.get("/api/runs/run/confusion").json()
    assert c["total"] == 6 and sum(map(sum, c["matrix"])) == 6
    for t in range(2):
        for p in range(2):
            cell = client.get(f"/api/runs/run/confusion/{t}/{p}").json()
            assert cell["count"] == c["matrix"][t][p] == len(cell["images"])
            for image in cell["images"]:
                assert image["top"][0]["index"] == p
                assert run.bundle.val.targets[int(image["image"].split(":")[1])] == t
    assert client.get("/api/runs/run/confusion/2/0").status_code == 400
    for method in ("pca", "tsne"):
        m = client.get("/api/runs/run/map", params={"method": method}).json()
        assert len(m["points"]) == len(m["images"]) == len(m["labels"]) == 6
        assert all(-1 <= v <= 1 for point in m["points"] for v in point)
    assert client.get("/api/runs/run/map", params={"method": "umap"}).status_code == 400


def test_training_view(served):
    _, _, client = served
    t = client.get("/api/runs/run/training").json()
    assert [row["epoch"] for row in t["metrics"]] == [1.0] and "width_mult: 0.125" in t["config"]
    assert t["studies"] == []


def test_the_page_and_its_files_come_from_the_app(served):
    _, _, client = served
    page = client.get("/").text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        assert client.get(asset).status_code == 200
    from alexnet.serve.app import STATIC

    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:src|href)=\"?(?:https?:)?//", text), path  # no CDN, nothing off the machine
        assert "import(" not in text and "@import" not in text


# --- abuse ----------------------------------------------------------------------------------------------------


def test_bad_uploads_get_a_clear_json_error(served, tmp_path):
    from data_factories import decompression_bomb_png, truncated_jpeg

    _, _, client = served
    cases = [(b"MZ\x90\x00 not an image", "tool.exe", 400, "tool.exe: not an image file"),
             (decompression_bomb_png(tmp_path / "b.png").read_bytes(), "bomb.png", 400, "bomb.png: decompression bomb"),
             (truncated_jpeg(tmp_path / "t.jpg").read_bytes(), "cut.jpg", 400, "truncated"),
             (b"", "empty.png", 400, "empty"),
             (b"\x89PNG" + b"\0" * (CAP + 1), "big.png", 413, "too large")]
    for body, name, status, message in cases:
        r = client.post("/api/runs/run/upload", content=body, headers={"X-Filename": name})
        assert r.status_code == status and message in r.json()["error"], (name, r.text)
        alive(client)


def test_a_malformed_or_empty_multipart_form_gets_a_json_error(served):
    _, _, client = served
    form = "multipart/form-data; boundary=XyZ"
    whole = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n" + png()
             + b"\r\n--XyZ--\r\n")
    cases = [(b"not a form at all", form, "malformed multipart form"),
             (whole[: len(whole) // 2], form, "ends before its closing boundary"),
             (whole, "multipart/form-data", "no boundary"),
             (whole, "multipart/form-data; boundary=" + "X" * 300, "malformed multipart form (Boundary length"),
             (whole.replace(b"Content-Disposition", b"Content Disposition"), form, "malformed multipart form"),
             (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n", form,
              "needs one file in the field 'file' (its fields: 'note')"),
             (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"e.png\"\r\n\r\n\r\n--XyZ--\r\n",
              form, "e.png: empty upload")]
    for body, content_type, message in cases:
        r = client.post("/api/runs/run/upload", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 400 and message in r.json()["error"], (message, r.text)
        alive(client)
    r = client.post("/api/runs/run/upload", files={"file": ("tool.exe", b"MZ\x90\x00 not an image")})
    assert r.status_code == 400 and "tool.exe: not an image file" in r.json()["error"]  # the decoder's message


def test_an_oversized_multipart_form_is_refused_by_the_cap(served):
    _, _, client = served
    big = b"\x89PNG" + b"\0" * (CAP + 1)
    r = client.post("/api/runs/run/upload", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks():  # no Content-Length: the route's count while it streams cuts it
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 10_000

    r = client.post("/api/runs/run/upload", content=chunks(),
                    headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    alive(client)


def test_an_oversized_body_without_content_length_is_cut_while_it_streams(served):
    _, _, client = served

    def chunks():
        for _ in range(40):
            yield b"\0" * 10_000  # 400 kB in all, > CAP; sent chunked, so no Content-Length to check first

    r = client.post("/api/runs/run/upload", content=chunks(), headers={"X-Filename": "stream.bin"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    alive(client)


@pytest.mark.parametrize("path", [
    "/api/runs/run/image/..%2F..%2F..%2Fetc%2Fpasswd", "/api/runs/run/image/%2Fetc%2Fpasswd",
    "/api/runs/run/image/val:1%2F..%2F..%2Fconfig.yaml", "/api/runs/run/image/val:99", "/api/runs/run/image/test:0",
    "/api/runs/run/image/upload:" + "0" * 32, "/api/runs/..%2F..%2Fetc/confusion", "/api/runs/run/../../etc/passwd",
    "/api/runs/run/predict?image=../../etc/passwd", "/api/runs/run/predict?image=val:1%00",
    "/api/runs/run/gradcam?image=/etc/passwd&class=0", "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/checkpoint.py",
])
def test_ids_and_paths_outside_the_run_are_refused(served, path):
    _, _, client = served
    r = client.get(path)
    assert 400 <= r.status_code < 500 and "root:" not in r.text
    if r.headers.get("content-type", "").startswith("application/json"):
        assert "error" in r.json()
    alive(client)


def test_a_token_is_checked_on_every_request(served):
    from fastapi.testclient import TestClient

    from alexnet.serve.app import create_app

    run, _, _ = served
    app = create_app([run], token=TOKEN)
    client = TestClient(app, base_url="http://192.0.2.7")  # any host: the token is the check now
    for path in ("/", "/static/app.js", "/api/runs", "/api/runs/run/image/val:0"):
        r = client.get(path)
        assert r.status_code == 401 and "token" in r.json()["error"]
    r = client.get("/api/runs", headers={"X-Alexnet-Token": TOKEN[:-1] + "x"})
    assert r.status_code == 403 and r.json() == {"error": "wrong token"}
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/api/runs", headers={"X-Alexnet-Token": TOKEN}).status_code == 200
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    r = client.get(f"/?token={TOKEN}")
    assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
    assert client.get("/api/runs/run/image/val:0").status_code == 200  # the page's cookie now carries it


def test_without_a_token_only_loopback_hosts_are_answered(served):
    _, _, client = served
    r = client.get("/api/runs", headers={"host": "attacker.example:8000"})
    assert r.status_code == 403 and "loopback" in r.json()["error"]
    assert client.get("/api/runs", headers={"host": "localhost:8000"}).status_code == 200


def test_a_non_loopback_host_always_gets_a_token():
    from alexnet.cli.serve import server_token
    from alexnet.errors import ConfigError

    assert server_token("127.0.0.1", None) is None
    generated = server_token("0.0.0.0", None)
    assert generated and len(generated) >= 32 and generated != server_token("0.0.0.0", None)
    assert server_token("0.0.0.0", "mine-12345") == "mine-12345"
    with pytest.raises(ConfigError):
        server_token("0.0.0.0", "")


def test_fifty_concurrent_requests_get_answers_and_the_server_stays_up(served):
    import httpx

    from alexnet.serve.app import Background, Limits, create_app

    run, _, _ = served
    server = Background(create_app([run], limits=Limits(workers=2, queue=4)))
    try:
        def one(i: int):
            r = httpx.get(f"{server.url}/api/runs/run/predict", params={"image": f"val:{i % 6}"}, timeout=60)
            return r.status_code, r.json()

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(one, range(50)))
        codes = [code for code, _ in answers]
        assert set(codes) <= {200, 503} and codes.count(200) >= 2, codes  # at least the two workers answered
        assert all("busy" in body["error"] for code, body in answers if code == 503)
        assert httpx.get(f"{server.url}/api/runs/run/predict", params={"image": "val:0"}, timeout=30).status_code == 200
    finally:
        server.stop()


def test_a_request_past_the_time_limit_is_answered_504(served):
    from fastapi.testclient import TestClient

    from alexnet.serve.app import Limits, create_app

    run, _, _ = served
    client = TestClient(create_app([run], limits=Limits(timeout_s=0.0005)), base_url="http://127.0.0.1")
    r = client.get("/api/runs/run/predict", params={"image": "val:0"})
    assert r.status_code == 504 and "longer than" in r.json()["error"]
    alive(client)


def test_a_run_whose_data_is_gone_still_predicts_and_says_why_the_rest_is_missing(trained):
    from fastapi.testclient import TestClient

    from alexnet.inspect.loaded import open_run
    from alexnet.serve.app import create_app

    data, run_dir = trained
    moved = data.with_name(data.name + ".moved")
    data.rename(moved)
    try:
        run = open_run(run_dir)
    finally:
        moved.rename(data)
    assert run.bundle is None and str(data) in run.data_problem
    client = TestClient(create_app([run]), base_url="http://127.0.0.1")
    (info,) = client.get("/api/runs").json()["runs"]
    assert not info["has_data"] and not info["has_index"] and str(data) in info["data_problem"]
    up = client.post("/api/runs/run/upload", content=png(), headers={"X-Filename": "red.png"}).json()
    answer = client.get("/api/runs/run/predict", params={"image": up["image"]}).json()
    assert len(answer["top"]) == 2 and answer["neighbours"] == []
    r = client.get("/api/runs/run/confusion")
    assert r.status_code == 404 and "needs the run's data" in r.json()["error"]
    r = client.get("/api/runs/run/image/val:0")
    assert r.status_code == 404 and "data is not available" in r.json()["error"]


def test_the_command_names_a_missing_run_and_a_busy_port(trained, tmp_path, capsys):
    import socket

    from alexnet.cli import main

    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: checkpoint not found" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(trained[1]), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", str(trained[1]), "--port", "70000"]) == 2


def test_the_training_view_finds_the_studies_of_a_run(tmp_path):
    from alexnet.serve.views import studies

    ablate = tmp_path / "ablate"
    run = ablate / "runs" / "relu-seed0"
    (run / "studies" / "mine").mkdir(parents=True)
    (run / "studies" / "mine" / "report.md").write_text("# my study\n")
    (ablate / "relu").mkdir()
    (ablate / "relu" / "report.md").write_text("# ReLU vs tanh\n| relu-seed0 | ... |\n")
    (ablate / "lrn").mkdir()
    (ablate / "lrn" / "report.md").write_text("# LRN\n| lrn-seed0 | ... |\n")  # another run's study
    found = {s["name"]: s["text"] for s in studies(run)}
    assert found == {"studies/mine/report.md": "# my study\n", "relu/report.md": "# ReLU vs tanh\n| relu-seed0 | ... |\n"}

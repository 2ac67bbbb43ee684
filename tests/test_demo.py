"""`deitctl demo` (a model in the browser) and `push --demo` (its Space), as people use them.

One `deitctl demo` server runs for the module, on a DeiT⚗ that `deitctl train` trained briefly on real Fashion-MNIST;
headless Chromium (Debian's package, driven by Playwright — never a downloaded browser) uploads a test image and
reads the page, and Gradio's own client sends the bad input and the burst of visitors. What needs no server
(decoding rules, a model without class names, an RGB model shown a grayscale image, a busy port) runs in-process.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import CLASSES, make_images, make_tiny_model
from test_hub import hub, run_dir  # noqa: F401  (fixtures: the local Hub, a finished run)
from test_train import _subprocess_env

from deitctl.data.fashion_mnist import idx_available

pytest.importorskip("gradio", reason="needs deitctl[demo]")
FASHION = pytest.mark.skipif(not idx_available(), reason="needs Debian's dataset-fashion-mnist")
TINY = ["--set", "model_args.depth=2", "--set", "model_args.embed_dim=32", "--set", "model_args.num_heads=2",
        "--set", "num_workers=0", "--set", "precision=fp32", "--set", "compile=false", "--set", "mixup=0",
        "--set", "cutmix=0", "--set", "reprob=0", "--set", "warmup_epochs=0", "--set", "lr=2e-3",
        "--set", "lr_base_batch=32"]
TOP1 = re.compile(r"Top-1: (.+), probability (\d\.\d{6})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    """Debian's Chromium (CI installs it: scripts/test.sh); DEITCTL_CHROMIUM names another."""
    return os.environ.get("DEITCTL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def start(cmd: list[str], url: str, env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """A server process, returned once ``url`` answers (its output, on failure, in the assertion)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{' '.join(cmd[1:4])} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{url} did not answer in 240 s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory) -> Path:
    """A DeiT⚗ trained by `deitctl train` on 256 real Fashion-MNIST images (no teacher: both heads learn the labels)."""
    from typer.testing import CliRunner

    from deitctl.cli import app

    out = tmp_path_factory.mktemp("demo") / "fashion-distilled"
    result = CliRunner().invoke(app, ["train", "fashion-deit-ti-distilled", "--out", str(out), *TINY,
                                      "--set", "distillation_type=none", "--epochs", "2", "--batch-size", "32",
                                      "--max-train-samples", "256", "--max-eval-samples", "64"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def fashion_images(tmp_path_factory) -> list[Path]:
    """The first three Fashion-MNIST test images, as PNG files (an ankle boot, a pullover, trousers)."""
    from deitctl.data.fashion_mnist import load_local

    folder = tmp_path_factory.mktemp("fashion-images")
    test = load_local()["test"]
    paths = [folder / f"test-{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        test[i]["image"].save(path)
    return paths


@pytest.fixture(scope="module")
def server(fashion_run, tmp_path_factory):
    """`deitctl demo RUN` in its own process, as a user starts it: (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path_factory.mktemp("server") / "demo.log"
    proc = start([sys.executable, "-m", "deitctl.cli", "demo", str(fashion_run), "--port", str(port)], url,
                 _subprocess_env(), log)
    yield url, proc
    stop(proc)


def predict_json(cli, model: Path, image: Path, *extra: str) -> dict:
    code, out, err = cli("predict", model, image, "--json", "--num-workers", "0", *extra)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------------------------------ the browser
@FASHION
def test_the_page_shows_what_predict_says(server, fashion_run, fashion_images, cli, tmp_path):
    """Upload a real test image in Chromium; the top-1 and its probability on the page are `predict --json`'s."""
    if chromium() is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (deitctl[demo] tests)")
    url, _ = server
    broken = tmp_path / "notes.png"  # an image's name, not an image's bytes
    broken.write_text("not an image")
    shot = Path(os.environ.get("DEITCTL_DEMO_SCREENSHOT", tmp_path / "demo.png"))
    requested: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("request", lambda r: requested.append(r.url))
        page.goto(url)
        upload = "#deitctl-input input[type=file]"
        page.wait_for_selector(upload, state="attached")
        assert "Test images of fashion-mnist" in page.inner_text("body")  # the run's data offers examples
        page.set_input_files(upload, str(broken))
        page.wait_for_function("document.querySelector('#deitctl-top1').innerText.includes('Not classified')")
        refused = page.inner_text("#deitctl-top1")
        page.click('#deitctl-input button[aria-label="Remove Image"]')
        page.set_input_files(upload, str(fashion_images[0]))
        page.wait_for_function("document.querySelector('#deitctl-top1').innerText.includes('Top-1')")
        page.wait_for_selector("#deitctl-map-1 img")
        headline = page.inner_text("#deitctl-top1")
        heads = [page.inner_text(f"#deitctl-head-{i}") for i in range(3)]
        facts = page.inner_text("#deitctl-facts")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert "notes.png is not an image" in refused
    expected = predict_json(cli, fashion_run, fashion_images[0])["top_k"][0]  # fused, as eval scores a DeiT⚗
    shown = TOP1.search(headline)
    assert shown is not None, headline
    assert (shown.group(1), shown.group(2)) == (expected["label"], f"{expected['prob']:.6f}")
    fused = heads[2]
    assert fused.startswith("Fused") and f"{expected['label']}\n{round(100 * expected['prob'])}%" in fused
    assert heads[0].startswith("Class token head") and heads[1].startswith("Distillation token head")
    recorded = json.loads((fashion_run / "metrics.jsonl").read_text().splitlines()[-1])["eval"]["top1"]
    assert f"top-1 {recorded:.2f} %" in facts and "deit_tiny_distilled_patch16_224" in facts and "1×28×28" in facts
    elsewhere = [u for u in requested if not u.startswith((url, "data:"))]  # data: the drawn maps, inline
    assert requested and not elsewhere, elsewhere
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- bad input, many users
def _classify(client, path: Path) -> tuple:
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/classify")


@FASHION
def test_bad_input_gets_a_message_and_the_server_keeps_serving(server, fashion_images, tmp_path):
    import psutil
    from gradio_client import Client, handle_file
    from PIL import Image

    url, proc = server
    client = Client(url, verbose=False, download_files=False)  # the answers, not copies of the drawn maps
    before = psutil.Process(proc.pid).memory_info().rss
    text = tmp_path / "notes.txt"
    text.write_text("a text file sent as an image")
    huge_png, huge_jpeg, colour = tmp_path / "huge.png", tmp_path / "huge.jpg", tmp_path / "colour.png"
    Image.new("L", (10_000, 10_000), 90).save(huge_png)  # 100 megapixels, 120 kB of PNG
    Image.new("L", (10_000, 10_000), 90).save(huge_jpeg, quality=50)
    Image.open(fashion_images[1]).convert("RGB").save(colour)  # an RGB file for a grayscale model
    answers = {path.name: _classify(client, path) for path in (text, huge_png, huge_jpeg, colour)}
    assert answers["notes.txt"][0].startswith("**Not classified:** notes.txt is not an image")
    assert "10000×10000 pixels" in answers["huge.png"][0] and "megapixels" in answers["huge.png"][0]
    assert TOP1.search(answers["huge.jpg"][0]) and "decoded at 5000×5000 from 10000×10000" in answers["huge.jpg"][-1]
    assert TOP1.search(answers["colour.png"][0]) and "converted from RGB to L" in answers["colour.png"][-1]
    alone = _classify(client, fashion_images[2])[0]
    jobs = [client.submit(handle_file(str(fashion_images[2])), api_name="/classify") for _ in range(20)]
    burst = [job.result(timeout=120)[0] for job in jobs]  # 20 visitors at once: each answered, in turn, the same
    assert burst == [alone] * 20 and TOP1.search(alone)
    grown = psutil.Process(proc.pid).memory_info().rss - before
    assert grown < 400 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB"
    assert proc.poll() is None and _classify(client, fashion_images[0])[0].startswith("Top-1")


@FASHION
def test_the_page_is_served_offline(server):
    url, _ = server
    with urllib.request.urlopen(url) as response:
        html = response.read().decode()
    assert '"analytics_enabled":false' in html
    fetched = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)  # scripts, styles, fonts, icons
    assert all(u.startswith(url.rstrip("/")) for u in fetched), fetched


# ------------------------------------------------------------------------------------ without a server
def _model_dir(path: Path, channels: int, labels: list[str] | None) -> Path:
    from deitctl.models.store import save_model_dir

    model = make_tiny_model(False, in_chans=channels, img_size=16)
    save_model_dir(model, path, label_names=labels, mean=(0.5,) * channels, std=(0.5,) * channels, crop_pct=1.0)
    return path


def test_a_grayscale_image_to_an_rgb_model_is_converted_and_said(cli, tmp_path):
    from deitctl.app.demo_model import DemoModel

    model = _model_dir(tmp_path / "rgb", 3, CLASSES)
    (image,), _ = make_images(1, size=16)
    image.save(tmp_path / "gray.png")  # mode L
    answer = DemoModel(str(model), top_k=3, precision="fp32").classify(tmp_path / "gray.png")
    assert answer.notes == ["converted from L to RGB: the model takes RGB images"]
    row = predict_json(cli, model, tmp_path / "gray.png", "--top-k", "3")
    assert answer.row["top_k"] == row["top_k"] and len(answer.labels) == 1
    assert answer.labels[0] == {t["label"]: t["prob"] for t in row["top_k"]}
    assert len(answer.maps) == 1 and answer.maps[0].shape == (224, 224, 3)  # the class token's rollout, drawn


def test_a_model_without_class_names_shows_indices_and_says_why(tmp_path):
    from deitctl.app.demo_model import DemoModel

    model = DemoModel(str(_model_dir(tmp_path / "nameless", 1, None)), top_k=4, precision="fp32")
    (image,), _ = make_images(1, size=16)
    image.save(tmp_path / "q.png")
    answer = model.classify(tmp_path / "q.png")
    assert set(answer.labels[0]) == {f"class {i}" for i in range(4)}
    assert re.match(r"Top-1: \*\*class \d\*\*", answer.headline)
    facts = dict(model.facts())
    assert facts["Classes"] == "4: no class names in its config (label_names), so shown as indices"
    assert model.classify(None).labels == [None]  # a cleared image clears the answer


def test_a_port_in_use_is_one_line_and_exit_2(cli, tiny_model_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli("demo", tiny_model_dir, "--port", port)
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert "\n" not in err.strip()


def test_without_gradio_the_demo_says_how_to_install_it(cli, tiny_model_dir, monkeypatch):
    from deitctl.app import demo

    monkeypatch.setattr(demo, "find_spec", lambda name: None)
    code, _, err = cli("demo", tiny_model_dir)
    assert code == 2 and "pip install 'deitctl[demo]'" in err


# ------------------------------------------------------------------------------------------- the Space
def test_push_demo_publishes_a_space_that_runs_the_demo(cli, hub, run_dir, tmp_path, monkeypatch):  # noqa: F811
    code, out, err = cli("push", run_dir, "org/tiny-deit", "--demo", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["space"]["url"] == f"{hub.url}/spaces/org/tiny-deit"
    space = hub.state.repos["spaces/org/tiny-deit"]
    assert space.sdk == "gradio"
    files = space.commits[space.branches["main"]]
    assert {"app.py", "requirements.txt", "README.md"} <= set(files)
    app_py = files["app.py"].decode()
    assert 'serve("org/tiny-deit")' in app_py and "from deitctl.app.demo import serve" in app_py
    assert files["requirements.txt"].decode().startswith("deitctl[demo]==")
    settings = yaml.safe_load(files["README.md"].decode().split("---\n")[1])
    assert settings["sdk"] == "gradio" and settings["app_file"] == "app.py" and settings["models"] == ["org/tiny-deit"]
    model = hub.state.repos["org/tiny-deit"]
    card = model.commits[model.branches["main"]]["README.md"].decode()
    assert f"[Try it in the browser]({hub.url}/spaces/org/tiny-deit)" in card
    commits = len(hub.state.commits_made)
    assert cli("push", run_dir, "org/tiny-deit", "--demo")[0] == 0
    assert len(hub.state.commits_made) == commits  # nothing changed: no new commit, neither model nor Space

    # app.py is `deitctl demo ORG/NAME`: run as a script (as `python app.py` and a Space run it), it hands the repo id
    # to the function the CLI calls, listening where Gradio's variables say; the model loads by that id from the hub
    from deitctl.app import demo

    app = tmp_path / "app.py"
    app.write_bytes(files["app.py"])
    seen = []
    monkeypatch.setattr(demo, "run", seen.append)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    runpy.run_path(str(app), run_name="__main__")
    assert seen == [demo.DemoRequest("org/tiny-deit", host="0.0.0.0", port=7860)]
    from deitctl.app.demo_model import DemoModel

    served = DemoModel("org/tiny-deit", precision="fp32")
    assert served.distilled and served.loaded.label_names == CLASSES
    assert dict(served.facts())["Accuracy at training"] == "top-1 62.50 %, top-5 100.00 % on fashion-mnist/test"


def test_push_demo_to_a_directory_hub_is_refused_before_anything_is_pushed(cli, run_dir, tmp_path):  # noqa: F811
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    code, _, err = cli("push", run_dir, "org/tiny-deit", "--demo", "--hub-dir", hub_dir)
    assert code == 2 and "--demo publishes a Space" in err
    assert not any(hub_dir.iterdir())

"""``deitctl demo``: a model in the browser — drop an image, see each head's top classes and where the model looks.

A Gradio app (the ecosystem's standard for model demos) over ``app.demo_model.DemoModel``. Offline by design:
Gradio's analytics are off, its page and fonts are served by this process (no CDN), no share link unless asked
(``--share``), and it listens on 127.0.0.1 unless told otherwise. The model is loaded and run once before the
server starts, so the first visitor gets an answer, not a wait. One image is classified at a time; up to
``QUEUE`` more wait in Gradio's queue (each told its place), and the rest are told the queue is full — a burst of
visitors costs time, not memory. A Space made by ``deitctl push --demo`` runs this same code (``serve``).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import DeitctlError, UsageError

if TYPE_CHECKING:
    from deitctl.app.demo_model import DemoModel

QUEUE = 64  # requests waiting for the model; more are refused with a message
MAX_UPLOAD = "50mb"  # an upload larger than this is refused by Gradio, in the page
# small images (28 px Fashion-MNIST) fill the box with their pixels visible, not blurred or lost in a corner
CSS = "#deitctl-input img {image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain}"
CACHE = (1800, 3600)  # every 30 min, Gradio deletes uploads older than an hour: the disk does not fill either


@dataclass
class DemoRequest:
    model: str
    port: int = 7860
    host: str = "127.0.0.1"
    share: bool = False
    top_k: int = 5
    precision: str = "auto"
    examples: int = 8  # test images offered, one per class


def check_port(host: str, port: int) -> None:
    """Refuse a port already taken (or a host this machine is not), before minutes of model loading."""
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535 (got {port})")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closed port is free
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}); another program holds the port "
                             "or the address is not this machine's: choose another with --port/--host") from None


def run(req: DemoRequest) -> None:
    """Load the model, then serve the page until interrupted (Ctrl-C)."""
    from deitctl.models.refs import preflight

    if req.top_k < 1:
        raise UsageError(f"--top-k must be at least 1 (got {req.top_k})")
    if find_spec("gradio") is None:
        raise UsageError("deitctl demo needs Gradio: pip install 'deitctl[demo]'")
    preflight(req.model)  # what needs no model is said in a second
    check_port(req.host, req.port)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check
    from deitctl.app.demo_model import DemoModel
    from deitctl.core.console import log

    engine = DemoModel(req.model, req.top_k, req.precision)
    examples, where = engine.examples(req.examples)
    blocks = build(engine, [str(p) for p in examples], where)
    url = f"http://{'[' + req.host + ']' if ':' in req.host else req.host}:{req.port}"
    log(f"demo of {req.model} on {url} ({engine.device.type}, {engine.precision}); Ctrl-C stops it")
    try:
        blocks.queue(max_size=QUEUE, default_concurrency_limit=1).launch(
            server_name=req.host, server_port=req.port, share=req.share, ssr_mode=False, show_error=True,
            quiet=True, max_file_size=MAX_UPLOAD, footer_links=["api", "settings"], css=CSS,
            allowed_paths=[os.path.dirname(p) for p in map(str, examples[:1])])
    except OSError as e:  # the port was taken between the check and the launch
        raise UsageError(f"cannot listen on {req.host}:{req.port}: {str(e).splitlines()[0]}") from None


def serve(model: str) -> None:
    """The entry point of a Space's ``app.py`` (``push --demo``): ``deitctl demo MODEL`` where Gradio's own variables
    say (a Space sets GRADIO_SERVER_NAME=0.0.0.0; elsewhere 127.0.0.1:7860), errors as one line."""
    try:
        run(DemoRequest(model, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860"))))
    except DeitctlError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(e.exit_code)


def build(engine: DemoModel, examples: list[str], examples_label: str) -> Any:
    """The page: the image and its examples, the answer (headline, each head's bars, the rollout), the facts."""
    import gradio as gr

    name = engine.ref.rstrip("/").split("/")[-1] or engine.ref
    with gr.Blocks(title=f"{name} · deitctl demo", analytics_enabled=False, delete_cache=CACHE) as blocks:
        gr.Markdown(f"# {name}\nDrop an image (or pick an example): the model's top classes, and where it looks. "
                    "Served by `deitctl demo`.")
        with gr.Row():
            with gr.Column(scale=5):
                image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image", height=320,
                                 elem_id="deitctl-input")
                if examples:
                    gr.Examples([[p] for p in examples], inputs=[image], label=examples_label, cache_examples=False,
                                examples_per_page=len(examples))
                gr.Markdown(_facts_table(engine.facts()), elem_id="deitctl-facts")
            with gr.Column(scale=6):
                headline = gr.Markdown("Drop an image, or pick one of the examples.", elem_id="deitctl-top1")
                labels = [gr.Label(num_top_classes=engine.top_k, label=title, elem_id=f"deitctl-head-{i}")
                          for i, title in enumerate(engine.heads)]
                with gr.Row():
                    maps = [gr.HTML(elem_id=f"deitctl-map-{i}") for i in range(len(engine.tokens))]
                notes = gr.Markdown(elem_id="deitctl-notes")

        def answer(upload: dict[str, Any] | None) -> tuple[Any, ...]:
            # the uploaded file's path, undecoded (preprocess=False below): decoding, and refusing what is not an image
            # or too large to decode, is DemoModel's, so each such upload gets a message in the page
            result = engine.classify((upload or {}).get("path"))
            said = "\n".join(f"- {note}" for note in result.notes)
            drawn = [_figure(m, title) for m, title in zip(result.maps, engine.map_titles(), strict=True)]
            return (result.headline, *result.labels, *drawn, said)

        image.change(answer, inputs=image, outputs=[headline, *labels, *maps, notes], api_name="classify",
                     concurrency_limit=1, show_progress="minimal", preprocess=False)
    return blocks


def _figure(image: Any, title: str) -> str:
    """A drawn map inline in the page (a data: URL): each answer carries its own picture, so answers given at once
    never share a file in Gradio's cache (identical outputs there are one file, rewritten while it is read)."""
    import base64
    import io

    from PIL import Image

    if image is None:
        return ""
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    data = base64.b64encode(png.getvalue()).decode()
    return (f'<figure style="margin:0"><img alt="{title}" src="data:image/png;base64,{data}" '
            f'style="width:100%;image-rendering:pixelated"><figcaption>{title}</figcaption></figure>')


def _facts_table(facts: list[tuple[str, str]]) -> str:
    rows = "\n".join(f"| {what} | {value.replace('|', '/')} |" for what, value in facts[1:])
    return f"### The model\n\n| {facts[0][0]} | {facts[0][1]} |\n|---|---|\n{rows}\n"

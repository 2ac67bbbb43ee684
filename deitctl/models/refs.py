"""The one parser of model references: whatever a user types where a model goes becomes a LoadedModel.

References, in the order they are tried (timm's explicit prefixes say which kind is meant):
  * ``local-dir:PATH`` or a directory holding ``config.json`` + ``model.safetensors`` (run or model directory),
  * a directory holding ``config.json`` + ``model.onnx`` (``deitctl export --format onnx``), run by ONNX Runtime,
  * ``ARCH:path.pth`` or ``path.pth`` — a legacy state dict (raw, or the authors' ``{"model": ...}``),
    read with ``torch.load(weights_only=True)``; DeiT architectures are inferred from the tensors,
  * ``hf-hub:org/name[@revision]`` or ``org/name[@revision]`` — a Hub repo (downloaded as safetensors,
    verified; no remote code, ever),
  * ``arch[.tag]`` — a timm model name, with pretrained weights from the Hub when a tag is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deitctl.core.errors import DeitctlError, UsageError
from deitctl.hub.types import is_repo_id
from deitctl.models.pth import PTH_SUFFIXES, load_pth
from deitctl.models.store import is_model_dir, is_onnx_dir, load_model_dir
from deitctl.models.types import CONFIG, WEIGHTS, LoadedModel

HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"


def hub_download(repo: str) -> Path:
    """Download a Hub repo's model files (safetensors + config only, verified) into the local cache."""
    from deitctl.hub.client import pull
    from deitctl.models.store import check_model_dir

    return Path(pull(repo, check=check_model_dir).path)


def load_model(
    ref: str, num_classes: int | None = None, img_size: int | None = None, ema: bool = False, **overrides: Any
) -> LoadedModel:
    """Resolve any model reference (see module docstring) to an eval-mode model on the CPU.

    ``overrides`` are extra ``timm.create_model`` arguments (e.g. ``drop_path_rate`` when fine-tuning).
    """
    preflight(ref)
    if ref.startswith(HF_HUB):
        return _load_hub(ref.removeprefix(HF_HUB), num_classes, img_size, ema, **overrides)
    explicit_dir = ref.startswith(LOCAL_DIR)
    path = Path(ref.removeprefix(LOCAL_DIR))
    if path.is_dir() and not is_model_dir(path) and is_onnx_dir(path):
        from deitctl.models.onnx import load_onnx_dir

        if num_classes or img_size or ema or overrides:
            raise UsageError(f"{path} holds an ONNX export, which runs as exported: it cannot be adapted to other "
                             "classes or sizes, nor trained; use the PyTorch model it was exported from")
        return load_onnx_dir(path)
    if path.is_dir() or explicit_dir:
        if not is_model_dir(path):
            raise UsageError(f"{path}: not a model or run directory (needs {CONFIG} and {WEIGHTS}); "
                             "train one with `deitctl train` or export one with `deitctl export`")
        return load_model_dir(path, num_classes, img_size, ema, **overrides)
    if ref.endswith(PTH_SUFFIXES):
        return load_pth(ref, num_classes, img_size, **overrides)
    if is_repo_id(ref) and not ref.startswith((".", "/")):  # preflight refused "runs/typo" (a local folder)
        return _load_hub(ref, num_classes, img_size, ema, **overrides)
    return load_timm(ref, num_classes, img_size, **overrides)


def preflight(ref: str) -> None:
    """A reference that cannot load fails now, in a second, with the one-line error its load would give after
    minutes of setup: an org/name whose org is a local folder ("runs/typo"), and offline, one that needs the Hub
    and is not cached; online (or local) the rest is left to the load itself."""
    from deitctl.hub.reach import online

    path = Path(ref)
    if is_repo_id(ref) and path.parent.is_dir() and not path.is_dir() and not ref.endswith(PTH_SUFFIXES):
        raise UsageError(f"{path}: no such run or model directory (and '{path.parent}' is a local folder, "
                         f"so this is not read as a Hub repo); check the path, or write {HF_HUB}{ref}")
    if ref.startswith(LOCAL_DIR) or path.exists() or ref.endswith(PTH_SUFFIXES):
        return
    hub = ref.startswith(HF_HUB) or is_repo_id(ref)
    if not hub and "." not in ref:
        return  # a timm name without weights: nothing to fetch
    if online():
        return
    if hub:
        hub_download(ref.removeprefix(HF_HUB))  # serves the cache, or raises at once
        return
    from huggingface_hub import try_to_load_from_cache

    if not any(isinstance(try_to_load_from_cache(f"timm/{ref}", name), str)
               for name in ("model.safetensors", "pytorch_model.bin")):
        raise DeitctlError(f"could not fetch weights for '{ref}': the Hub is unreachable (or HF_HUB_OFFLINE is set) "
                           "and they are not in the local Hub cache; download them where the Hub is reachable "
                           "(`deitctl pull`, or run once online with the same HF_HOME) and pass the directory")


def _load_hub(repo: str, num_classes: int | None, img_size: int | None, ema: bool, **overrides: Any) -> LoadedModel:
    loaded = load_model_dir(hub_download(repo), num_classes, img_size, ema, **overrides)
    loaded.source = repo
    return loaded


def load_timm(ref: str, num_classes: int | None = None, img_size: int | None = None, **overrides: Any) -> LoadedModel:
    """A timm name; ``arch.tag`` asks timm for published weights, which needs the Hub.

    Published weights at another resolution (``finetune deit-b-384 --from deit_base_patch16_224.fb_in1k``) are
    loaded at their own size, then adapted as the authors do (``models.adapt``: position embeddings resized
    bicubic without antialiasing, which timm's own resize at load time would apply).
    """
    from deitctl.models.adapt import load_adapted
    from deitctl.models.factory import build, check_arch
    from deitctl.models.inspect import data_config

    arch = check_arch(ref)
    kwargs: dict[str, Any] = {"num_classes": num_classes, **overrides} if num_classes else dict(overrides)
    if "." not in ref:
        model = build(arch, img_size=img_size, **kwargs)
    else:
        from deitctl.hub.reach import cache_only, online

        try:
            with cache_only(not online()):  # offline: timm serves the Hub cache or fails at once, no retries
                model = build(ref, pretrained=True, **overrides)
        except Exception as e:  # timm raises many kinds (OSError, LocalEntryNotFoundError, RuntimeError)
            raise DeitctlError(
                f"could not fetch weights for '{ref}' ({type(e).__name__}): the Hub is unreachable or the tag "
                "is unknown; download them where the Hub is reachable (`deitctl pull`) and pass the directory"
            ) from None
        if img_size or (num_classes and num_classes != model.num_classes):
            published = model
            model = build(arch, img_size=img_size, **kwargs)
            load_adapted(model, published.state_dict())
    model.eval()
    return LoadedModel(model, arch, ref, None, data_config(model), {}, None)


# the keys of a saved config's model_args that describe the data, not the architecture (the recipe has its own)
_DATA_ARGS = ("num_classes", "img_size", "in_chans", "drop_path_rate", "drop_rate")


def architecture(ref: str) -> tuple[str, dict[str, Any]]:
    """The architecture a reference builds and its timm arguments, read without building it (from config.json,
    the timm name, or a .pth's tensors): what a fine-tuning run records as its model."""
    from deitctl.models.store import read_config

    if ref.endswith(PTH_SUFFIXES):
        loaded = load_pth(ref)
        return loaded.arch, {k: v for k, v in loaded.args.items() if k not in _DATA_ARGS}
    path = Path(ref.removeprefix(LOCAL_DIR))
    if ref.startswith(HF_HUB) or (not path.is_dir() and is_repo_id(ref) and not ref.startswith((".", "/"))):
        path = fetch(ref)
    if path.is_dir():
        cfg = read_config(path)
        return cfg["architecture"], {k: v for k, v in (cfg.get("model_args") or {}).items() if k not in _DATA_ARGS}
    if "/" in ref:
        load_model(ref)  # not a directory, file or repo: the loader's own one-line error
    from deitctl.models.factory import check_arch

    return check_arch(ref), {}


def fetch(ref: str) -> Path:
    """Make a reference's files local: a Hub repo is downloaded and verified (its local directory returned);
    anything else is already local, or fetched by timm when built (returned as given)."""
    if ref.startswith(HF_HUB) or (is_repo_id(ref) and not ref.startswith((".", "/")) and not Path(ref).exists()
                                  and not Path(ref).parent.is_dir()):
        return hub_download(ref.removeprefix(HF_HUB))
    return Path(ref.removeprefix(LOCAL_DIR))

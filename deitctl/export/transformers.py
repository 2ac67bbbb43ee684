"""timm DeiT → Hugging Face transformers, by renaming tensors (no re-implementation of the model).

transformers' checkpoints keep the "v4" key layout (it renames them on load), so we write that:
``qkv`` split into ``query``/``key``/``value``, ``norm1`` → ``layernorm_before`` and so on.

  * a distilled DeiT (class + distillation token) becomes ``DeiTForImageClassificationWithTeacher``
    (``model_type: deit``; ``cls_classifier`` + ``distillation_classifier``; its logits are the mean
    of both heads, exactly what timm's distilled model returns in eval mode);
  * a plain DeiT becomes ``ViTForImageClassification`` (``model_type: vit``). transformers' DeiT
    classes always carry a distillation token, which would change the class token's attention, so
    a model without one is a ViT to transformers — as in the original ``facebook/deit-*`` repos.

``layer_norm_eps`` is 1e-6 (timm's) so the outputs match to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deitctl.core.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from deitctl.models.types import LoadedModel

_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def _check_supported(model: nn.Module) -> None:
    """Only what transformers' ViT/DeiT can express: plain pre-norm blocks, class token, GELU MLP."""
    from torch import nn

    block = model.blocks[0] if hasattr(model, "blocks") else None
    ok = (
        block is not None
        and getattr(model, "cls_token", None) is not None
        and getattr(model, "global_pool", "token") == "token"
        and isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity)
        and isinstance(getattr(block.attn, "q_norm", nn.Identity()), nn.Identity)
        and block.attn.qkv.bias is not None
        and isinstance(getattr(block.mlp, "act", None), nn.GELU)
        and isinstance(getattr(model, "fc_norm", nn.Identity()), nn.Identity)
    )
    if not ok:
        raise UsageError(f"--format transformers supports DeiT/ViT models only, not {type(model).__name__}; "
                         "use --format safetensors or onnx")


def convert_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], bool]:
    """The transformers state dict of a timm DeiT, and whether it is the distilled (teacher) variant."""
    from deitctl.models.inspect import is_distilled

    _check_supported(model)
    distilled = is_distilled(model)
    prefix = "deit" if distilled else "vit"
    top = {
        "cls_token": f"{prefix}.embeddings.cls_token",
        "dist_token": f"{prefix}.embeddings.distillation_token",
        "pos_embed": f"{prefix}.embeddings.position_embeddings",
        "patch_embed.proj.weight": f"{prefix}.embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": f"{prefix}.embeddings.patch_embeddings.projection.bias",
        "norm.weight": f"{prefix}.layernorm.weight",
        "norm.bias": f"{prefix}.layernorm.bias",
    }
    heads = {"head.": "cls_classifier." if distilled else "classifier.", "head_dist.": "distillation_classifier."}
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key in top:
            out[top[key]] = value
        elif head := next((h for h in heads if key.startswith(h)), None):
            out[heads[head] + key[len(head):]] = value
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            out.update(_block_tensors(f"{prefix}.encoder.layer.{index}.", rest, value))
        else:
            raise UsageError(f"--format transformers: no transformers name for tensor '{key}'; use safetensors or onnx")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}, distilled


def _block_tensors(prefix: str, rest: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    module, kind = rest.rsplit(".", 1)  # kind: weight | bias
    if module == "attn.qkv":
        parts = value.chunk(3, dim=0)
        return {f"{prefix}attention.attention.{n}.{kind}": t for n, t in zip(("query", "key", "value"), parts, strict=True)}
    if module not in _BLOCK_RENAMES:
        raise UsageError(f"--format transformers: unsupported block tensor '{rest}'; use safetensors or onnx")
    return {f"{prefix}{_BLOCK_RENAMES[module]}.{kind}": value}


def hf_config(loaded: LoadedModel, distilled: bool) -> dict[str, Any]:
    """config.json for transformers: shapes from the live model, labels and preprocessing from the run."""
    model = loaded.model
    block = model.blocks[0]
    labels = loaded.label_names or [f"LABEL_{i}" for i in range(model.num_classes)]
    return {
        "model_type": "deit" if distilled else "vit",
        "architectures": ["DeiTForImageClassificationWithTeacher" if distilled else "ViTForImageClassification"],
        "hidden_size": model.embed_dim,
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": block.attn.num_heads,
        "intermediate_size": block.mlp.fc1.out_features,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": 1e-6,
        "image_size": model.patch_embed.img_size[0],
        "patch_size": model.patch_embed.patch_size[0],
        "num_channels": model.patch_embed.proj.in_channels,
        "qkv_bias": True,
        "encoder_stride": model.patch_embed.patch_size[0],
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def preprocessor_config(loaded: LoadedModel) -> dict[str, Any]:
    """The image processor that does what the model's DataConfig says: shorter side to size/crop_pct
    (bicubic), center crop, rescale, normalize. transformers' BiT processor is the one that resizes the
    shorter side (DeiT's squashes a non-square image to a square); no RGB conversion for grayscale models."""
    import math

    from deitctl.data.transforms import channel_stats

    dc = loaded.data_config
    c, size = dc.channels, dc.size
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": math.floor(size / dc.crop_pct)},
        "resample": 3 if dc.interpolation == "bicubic" else 2,
        "do_center_crop": True,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(channel_stats(dc.mean, c)),
        "image_std": list(channel_stats(dc.std, c)),
        "do_convert_rgb": c == 3,
    }


def save_transformers(loaded: LoadedModel, out: Path) -> None:
    from safetensors.torch import save_file

    state, distilled = convert_state_dict(loaded.model)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(loaded, distilled), indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config(loaded), indent=2) + "\n")


def load_transformers(path: Path) -> nn.Module | None:
    """Load the export with transformers itself (None when it is not installed)."""
    try:
        from transformers import AutoModelForImageClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return AutoModelForImageClassification.from_pretrained(str(path)).eval()

"""The recipe schema: every hyper-parameter of a run, validated, with the paper's Table 9 names.

A recipe is data, like timm's ``pretrained_cfg``: every hyper-parameter of a run lives here, so a run
directory's ``recipe.yaml`` alone says how a model was trained.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Recipe(BaseModel):
    """The fully resolved recipe. Key names follow the paper's Table 9 and the authors' flags."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = ""
    description: str = ""

    # model
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)  # extra timm kwargs: patch_size, depth, ...
    img_size: int = Field(224, gt=0)
    in_chans: int = Field(3, gt=0)
    num_classes: int | None = Field(None, gt=0)  # None: taken from the dataset
    drop: float = Field(0.0, ge=0, lt=1)
    drop_path: float = Field(0.1, ge=0, lt=1)
    init_from: str | None = None  # model reference to start from (fine-tuning)

    # data
    dataset: str = "imagenet-1k"
    train_split: str = "train"
    eval_split: str = "validation"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    eval_crop_pct: float = Field(0.875, gt=0, le=1)
    train_interpolation: Literal["bicubic", "bilinear", "random"] = "bicubic"
    num_workers: int = Field(4, ge=0)
    streaming: bool = False  # read the data as a stream (Hub, parquet / WebDataset shards): nothing copied first
    shuffle_buffer: int = Field(1000, gt=0)  # streaming: rows each loader worker shuffles at a time (a block)

    # optimisation (Table 9)
    epochs: int = Field(300, gt=0)
    batch_size: int = Field(1024, gt=0)  # global, across all processes and accumulation steps
    optimizer: Literal["adamw", "sgd", "momentum"] = "adamw"  # sgd: Nesterov (timm's, the authors'); momentum: classical
    opt_eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    lr: float = Field(5e-4, gt=0)  # base learning rate, before the linear scaling rule
    lr_base_batch: int = Field(512, gt=0)  # effective lr = lr * batch_size / lr_base_batch
    weight_decay: float = Field(0.05, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(5, ge=0)
    warmup_lr: float = Field(1e-6, ge=0)
    min_lr: float = Field(1e-5, ge=0)
    clip_grad: float | None = Field(None, gt=0)
    ema: bool = False
    ema_decay: float = Field(0.99996, gt=0, lt=1)

    # regularisation and augmentation (Table 9)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    rand_augment: str | None = "rand-m9-mstd0.5-inc1"
    mixup: float = Field(0.8, ge=0)
    cutmix: float = Field(1.0, ge=0)
    mixup_prob: float = Field(1.0, ge=0, le=1)
    mixup_switch_prob: float = Field(0.5, ge=0, le=1)
    reprob: float = Field(0.25, ge=0, le=1)
    remode: Literal["pixel", "rand", "const"] = "pixel"
    recount: int = Field(1, ge=1)
    crop_padding: int = Field(4, ge=0)  # images of <= 32 px: RandomCrop(padding) for training (the authors: 4)
    repeated_aug: int = Field(3, ge=0)  # number of repeats; 0 = off

    # distillation through attention
    distillation_type: Literal["none", "soft", "hard"] = "none"
    teacher: str | None = None
    distillation_alpha: float = Field(0.5, ge=0, le=1)
    distillation_tau: float = Field(1.0, gt=0)
    soft_reduction: Literal["batchmean", "elementwise"] = "batchmean"  # batchmean: the paper; elementwise: authors' code
    # a ⚗ model trained without a teacher: its distillation head learns the labels too, so the forward of plain timm
    # and transformers (the mean of both heads) is the model deitctl evaluates; false: the class head alone learns
    label_both_heads: bool = True

    # run mechanics
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it
    teacher_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: fp32 for hard labels, else precision
    checkpoint_every: int = Field(0, ge=0)  # optimizer steps between mid-epoch checkpoints; 0 = per epoch only
    eval_every: int = Field(1, ge=0)  # epochs between evaluations; 0 = only at the end
    # experiment trackers (records.runlog, accelerate's): tensorboard (RUN/tb), wandb, mlflow, all (those installed),
    # none; a list, or one string with commas (--report-to tensorboard,mlflow)
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "all", "none"]] = Field(
        default_factory=lambda: ["tensorboard"])

    # speed levers (deitctl/speed.py): none changes what is computed beyond rounding; each can be turned off
    compile: bool | Literal["auto"] = "auto"  # the frozen teacher, weights folded in; auto: runtime.rules
    compile_student: bool | Literal["auto"] = "auto"  # auto: runs of >= 2,000 optimizer steps
    attention: Literal["auto", "fused", "math"] = "auto"  # auto: math when training on a CPU, fused elsewhere
    fused_optimizer: bool = True  # AdamW's fused kernel
    fast_augment: bool = True  # <= 32 px: the augmentation in NumPy (bit-identical to the torchvision ops, 2.3x cheaper)
    decode_once: bool = True  # repeated augmentation's copies of a sample decode once (bit-identical; data.loaders)
    # distillation: the teacher's outputs stored once per augmented batch and read by every run on the same images
    # (bit-identical; training.teacher_store); auto: on for map-style data
    teacher_store: bool | Literal["auto"] = "auto"

    @field_validator("report_to", mode="before")
    @classmethod
    def _tracker_list(cls, value: Any) -> Any:
        """``"tensorboard,mlflow"`` (a flag, a --set) is the list of those two; "none" with others says two things."""
        names = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if isinstance(names, list) and "none" in names and len(set(names)) > 1:
            raise ValueError("'none' reports to no tracker: name it alone")
        return names

    @property
    def effective_lr(self) -> float:
        """The paper's linear scaling rule: lr × global_batch / 512."""
        return self.lr * self.batch_size / self.lr_base_batch

    @property
    def is_distilled(self) -> bool:
        return self.distillation_type != "none"

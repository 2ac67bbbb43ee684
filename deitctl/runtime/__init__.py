"""Layer 5: how a model runs fast — one small rule per lever, on by default only where it measured faster.

Measured side by side (``benchmarks/``, ``docs/performance.md``); none changes what is computed beyond
floating-point rounding. The recipe keys that switch them:

  precision: auto        bf16 where the hardware computes it natively (CPU AMX / AVX512-BF16, GPU Ampere+):
                         autocast for the student that trains; the frozen teacher is cast to bf16 whole
  teacher_precision: auto  fp32 for hard distillation (bf16 flipped 0.43 % of the teacher's hard labels),
                         the run's precision for soft distillation
  compile: true          torch.compile (inductor): the frozen teacher with weights folded in ("freezing")
  compile_student: auto  torch.compile of the student's training step: 17-20 % faster steps on a CPU for
                         ~45 s of compilation, so auto compiles runs of at least 2,000 optimizer steps
  attention: auto        timm's explicit attention when training on a CPU, where the fused kernel's backward
                         is slower; fused scaled-dot-product attention everywhere else
  fused_optimizer: true  AdamW's fused kernel: one pass over all parameters instead of one per tensor
  fast_augment: true     images of <= 32 px augmented in NumPy, bit-identical to the torchvision ops and 2.3x
                         cheaper per image (on 2 cores the data worker takes its CPU from the training step)
  decode_once: true      repeated augmentation's copies of a sample in one loader worker decode once and are
                         augmented apiece: bit-identical, 1.21x (folder) / 1.25x (stream) images per worker at
                         224 px (benchmarks/bench_data.py --only imagenet); map-style data with several
                         processes deals the copies to different processes, where it cannot apply

Inference (``deitctl eval`` / ``bench``) uses the same rules on a model that no longer trains: it is cast to
bf16 whole (no fp32 master weights to keep, no per-op casts) and, with ``--compile``, frozen and compiled.
"""

"""The step harness: speed and memory of mtl-hf models against transformers' own ViT models.

Run from the repository root: ``python -m benchmarks.harness --help``.

Every case trains (or runs inference) on the same backbone config, batch, inputs and backbone weights,
in one process. Cases are interleaved round by round, in a new random order each round, so that the
load of a shared machine hits them all alike; each ratio is the median over rounds of the per-round
ratio (the ratio of the fastest calls is given too). Peers:

* ``hf_cls``: ``transformers.ViTForImageClassification`` (one logit, BCE-with-logits loss), and
  ``hf_cls_twin``, an identical second copy whose ratio to ``hf_cls`` is the run's noise floor;
* ``hf_mim``: ``transformers.ViTForMaskedImageModeling`` (SimMIM) with the same block masks as ours;
* ``timm_cls``: ``timm``'s ``VisionTransformer`` of the same shape, when timm is installed.

Ours: ``stl`` (one binary classification head; ``stl_twin``, an identical copy, is the A/A control of
our steps), ``mtl`` (classification + SimMIM, ``two_pass`` and
``concat`` view layouts), ``mtl_mae`` (classification + the MAE head, 75 % of patches hidden from the
encoder), each also with activation checkpointing and under bf16 autocast, which is what
``accelerate launch --mixed_precision bf16`` applies (``torch.autocast`` with bfloat16 on the
Accelerate device). Every training step is forward, loss, backward and a fused AdamW step.

Layout:

* :mod:`~benchmarks.harness.cases`: a :class:`~benchmarks.harness.cases.Case` is a model, a step mode,
  a precision, checkpointing and a view layout; the case tables and the ratios (with their goals);
* :mod:`~benchmarks.harness.steps`: the step modes (``train``, ``infer``, the matmul ``ceiling``,
  ``idle``); a new kind of step is one function registered there;
* :mod:`~benchmarks.harness.workbench`: models, optimizers, the batch, model FLOPs;
* suites (``--suites``): :mod:`~benchmarks.harness.speed` (interleaved timings by wall-clock or process
  CPU time, page faults, same-round ratios, MFU against the matmul ceiling measured in the same
  rounds), :mod:`~benchmarks.harness.memory` (peak RSS on the CPU, peak allocated memory on a GPU, of
  two steps, each case in a fresh process), :mod:`~benchmarks.harness.overhead` (what our code adds
  per call where compute vanishes), :mod:`~benchmarks.harness.optimizer` (AdamW implementations),
  :mod:`~benchmarks.harness.precision` (bf16 autocast vs fp32 on one batch);
* :mod:`~benchmarks.harness.report` and :mod:`~benchmarks.harness.cli`: tables, JSON, the command.

Examples::

    python -m benchmarks.harness --quick --threads 1                        # small ViT, under a minute
    python -m benchmarks.harness --size vits16 --threads 2 --json out.json  # DINO ViT-S/16 at 224 px

Timings depend on the machine's other load: set ``--threads`` deliberately (on a busy machine more
threads than free cores make every step slower, often by far) and read the ratios, which are robust.
``benchmarks/README.md`` holds the latest tables and how they were taken.
"""

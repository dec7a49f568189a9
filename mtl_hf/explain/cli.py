"""``mtl-hf explain MODEL [MODEL ...] --images ... | --dataset ...``: attention maps, MIM panels and the
attention-in-lesion table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..data.config import AXIS_INDEX


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf explain",
        description=(
            "Draw DINO-style attention maps (last layer per head and averaged, DINO's mass threshold, "
            "attention rollout), a grid comparing the models, and masked-image-modeling panels with one "
            "mask for all models. With --dataset and lesion masks (BraTS slices), also measure how much "
            "attention falls in the lesion: attention_localization.csv/.md with patient-level bootstrap "
            "intervals."
        ),
    )
    parser.add_argument("models", nargs="+", help="model folders, training run folders or Hub ids")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", help="image files, volumes or folders")
    source.add_argument("--dataset", help="a training config YAML or run folder: explain its data split")
    parser.add_argument("--split", default="test", choices=["test", "validation"], help="split of --dataset")
    parser.add_argument("--cache-dir", help="data cache folder (default: the config's)")
    parser.add_argument("-o", "--output-dir", default="explain", help="where to write (default: explain)")
    parser.add_argument("--max-images", type=int, default=8, help="images drawn (default 8)")
    parser.add_argument(
        "--mass", type=float, default=0.6, help="share of attention kept by the threshold panel"
    )
    parser.add_argument("--no-rollout", action="store_true", help="skip attention rollout")
    parser.add_argument("--no-mim", action="store_true", help="skip the masked-image-modeling panels")
    parser.add_argument("--mim-task", help="which MIM task, when a model has several")
    parser.add_argument("--no-localization", action="store_true", help="skip the attention-in-lesion table")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and MIM-mask seed (default 0)")
    parser.add_argument("--axis", choices=list(AXIS_INDEX), default="axial", help="NIfTI plane")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .explanation import explain, named_models

    models = named_models(args.models)
    dataset = None
    if args.dataset is not None:
        from ..inference.loading import load_model_and_processor
        from .run_data import split_loader

        loaded = {name: load_model_and_processor(m)[0] for name, m in models.items()}
        models = loaded
        first = next(iter(loaded.values()))
        dataset = split_loader(
            args.dataset, first, split=args.split, batch_size=args.batch_size, cache_dir=args.cache_dir
        )
    result = explain(
        models,
        output_dir=args.output_dir,
        images=args.images,
        dataset=dataset,
        max_images=args.max_images,
        mass=args.mass,
        rollout=not args.no_rollout,
        mim=not args.no_mim,
        mim_task=args.mim_task,
        localization=not args.no_localization,
        batch_size=args.batch_size,
        n_resamples=args.n_resamples,
        confidence=args.confidence,
        seed=args.seed,
        slice_axis=AXIS_INDEX[args.axis],
        progress=not args.no_progress,
    )
    print(f"{len(result.figures)} figures -> {args.output_dir}/")
    if result.localization is not None:
        from .localization import localization_markdown

        print(localization_markdown(result.localization))
    return 0

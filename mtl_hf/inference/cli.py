"""``mtl-hf predict MODEL INPUT...``: each task's predictions (class probabilities, a regression's
values) for images, DICOM and NIfTI volumes, and masks of segmentation tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..data.config import AXIS_INDEX
from ..data.readers.suffixes import READABLE_SUFFIXES
from .choices import AGGREGATIONS, INTENSITIES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf predict",
        description=(
            "Each task's predictions (class probabilities of a classifier, values of a regression) for "
            "every image, slice and frame of the inputs, written as predictions.csv and predictions.json "
            "(and volume_predictions.csv for NIfTI volumes and multi-frame DICOM, one volume-level value "
            "per task output, combined as the task's head says). Segmentation tasks (a plugin "
            "head such as mtl-hf-segmentation's) write masks under masks/<task>/: a PNG per image, a "
            "NIfTI volume (RAS+, the input's world coordinates) per NIfTI input. Runs on the device "
            f"Accelerate picks. Supported files: {', '.join(READABLE_SUFFIXES)}. A file that cannot be "
            "read is named on stderr and in errors.csv, the others are still predicted, and the exit "
            "status is 1. When nothing can be run the command stops with one line on stderr: exit status 2 "
            "for a bad option or task, 1 for a model that cannot be loaded or an output that cannot be "
            "written (such as a symbolic link where an output file goes)."
        ),
    )
    parser.add_argument("model", help="model folder, training run folder (its best_model/) or Hub id")
    parser.add_argument("inputs", nargs="+", help="image files, volumes or folders (searched recursively)")
    parser.add_argument(
        "-o", "--output-dir", default="predictions", help="where to write (default: predictions)"
    )
    parser.add_argument(
        "--task", action="append", dest="tasks", help="task to predict (repeatable; default all)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default="topk_mean",
        help="volume-level score from slice probabilities (default topk_mean: mean of the top-k slices); "
        "a head with its own rule keeps it (a regression's volume_aggregation, mean by default)",
    )
    parser.add_argument("--top-k", type=int, default=3, help="slices averaged by topk_mean (default 3)")
    parser.add_argument(
        "--axis", choices=list(AXIS_INDEX), default="axial", help="NIfTI slicing plane (default axial)"
    )
    parser.add_argument(
        "--intensity",
        choices=INTENSITIES,
        default="brain",
        help="NIfTI intensity scaling: brain (as the training data, default), volume or slice min-max",
    )
    parser.add_argument("--keep-empty", action="store_true", help="also score constant (background) slices")
    parser.add_argument(
        "--grayscale",
        action="store_true",
        help="convert colour images to grey when reading (as data.images.grayscale: true in training)",
    )
    parser.add_argument("--revision", help="Hub revision of the model")
    parser.add_argument("--local-files-only", action="store_true", help="do not contact the Hub")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .prediction import predict

    hub = {"revision": args.revision} if args.revision else {}
    if args.local_files_only:
        hub["local_files_only"] = True
    result = predict(
        args.model,
        args.inputs,
        output_dir=args.output_dir,
        tasks=args.tasks,
        batch_size=args.batch_size,
        aggregation=args.aggregation,
        top_k=args.top_k,
        slice_axis=AXIS_INDEX[args.axis],
        intensity=args.intensity,
        skip_empty=not args.keep_empty,
        progress=not args.no_progress,
        grayscale=args.grayscale,
        **hub,
    )
    print(f"{len(result.images)} images/slices, {len(result.volumes)} volumes -> {args.output_dir}/")
    if result.masks:
        print(f"  segmentation masks of {len(result.masks)} inputs in {args.output_dir}/masks/")
    for row in result.volume_rows():
        scores = ", ".join(f"{k}={v:.3f}" for k, v in row.items() if k not in ("source", "num_slices"))
        print(f"  {row['source']} ({row['num_slices']} slices): {scores}")
    for error in result.errors:
        print(f"error: {error.source}: {error.reason}", file=sys.stderr)
    if result.errors:
        print(
            f"{len(result.errors)} input(s) could not be read (listed in {args.output_dir}/errors.csv); "
            "every other input was predicted",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":  # accelerate launch -m mtl_hf.inference.cli ...
    from ..cli import run_command

    sys.exit(run_command("predict", main, sys.argv[1:]))

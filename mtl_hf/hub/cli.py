"""``mtl-hf push``: publish a model folder or a training run to the Hub with a generated model card."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf push",
        description=(
            "Upload a model folder (save_pretrained output) or a training run folder (its best_model/, "
            "plots and results) to the Hugging Face Hub, with a model card rendered from the run. The token "
            "comes from --token, HF_TOKEN or `hf auth login`, and is never printed."
        ),
    )
    parser.add_argument("path", help="model folder or training run folder")
    parser.add_argument("repo_id", help="Hub repository, e.g. my-lab/brats-mtl-vits16")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to push to (created if missing)")
    parser.add_argument("--message", help="commit message")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument(
        "--adapter-only",
        action="store_true",
        help="for a LoRA model: push only the adapter (peft format) and the heads, which load onto the "
        "base backbone the card names, not the full weights (see mtl_hf.lora_adapter)",
    )
    parser.add_argument(
        "--space",
        nargs="?",
        const="",
        metavar="SPACE_ID",
        help="also create a Gradio Space serving the model's web page (mtl-hf app), default id: the "
        "model's (see mtl_hf.app.space)",
    )
    card = parser.add_argument_group("model card")
    card.add_argument(
        "--license", default="apache-2.0", help="license id of the weights (default apache-2.0)"
    )
    card.add_argument(
        "--dataset", action="append", default=[], help="Hub id of a training data set (repeatable)"
    )
    card.add_argument("--dataset-name", help="readable name of the evaluation data set")
    card.add_argument(
        "--base-model", help="Hub id of the backbone checkpoint (default: read from the config)"
    )
    card.add_argument("--tag", action="append", default=[], help="extra Hub tag (repeatable)")
    card.add_argument("--model-name", help="card title (default: the repository name)")
    card.add_argument("--description", help="a paragraph on what the model is for")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .model_card import ModelCardOptions
    from .push import push_to_hub

    options = ModelCardOptions(
        license=args.license,
        datasets=args.dataset,
        dataset_name=args.dataset_name,
        base_model=args.base_model,
        tags=args.tag,
        model_name=args.model_name,
        description=args.description,
    )
    result = push_to_hub(
        args.path,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.message,
        token=args.token,
        endpoint=args.endpoint,
        card=options,
        create_pr=args.create_pr,
        adapter_only=args.adapter_only,
    )
    print(f"Pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")
    if args.space is not None:
        from ..app.space import push_space

        space = push_space(
            result.repo_id,
            space_id=args.space or None,
            folder=args.path,
            private=args.private or None,
            token=args.token,
            endpoint=args.endpoint,
        )
        print(f"Space {space}: app.py, requirements.txt and README.md")
    return 0

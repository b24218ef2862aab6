"""The flags of each command (one builder per command, each with an example in its ``--help``). A builder
imports what its choices need when it runs, so ``image-lineage --help`` starts without torch or MLflow."""

from __future__ import annotations

import argparse

EXAMPLES = {
    "log-folder-dataset": "image-lineage log-folder-dataset --data-dir image_dataset --version v2 "
                          "--experiment-name HW_Image_Dataset_6612345678",
    "log-hf-dataset": "image-lineage log-hf-dataset --source coco/sample --experiment-name lineage",
    "coco-finetune": "image-lineage coco-finetune --data-dir coco/sample --weights none "
                     "--model fasterrcnn_mobilenet_v3_large_320_fpn --image-size 160 --epochs 1",
    "check-dataset": "image-lineage check-dataset --source ../data/pets --on-leakage fail --experiment-name checks",
    "train-registry": "image-lineage train-registry --suite wine --experiment-name registry_lab",
    "compare": "image-lineage compare --experiment HW_Image_Dataset_6612345678",
    "workflow": "image-lineage workflow --experiment-name HW_Image_Dataset_demo",
    "download": "image-lineage download --run-id 0123abcd... --destination restored/v2",
    "orphans": "image-lineage orphans --experiment HW_Image_Dataset_6612345678",
    "gc": "image-lineage gc --delete",
    "trace": "image-lineage trace data/pets/v2/cat/cat_01.jpg",
    "lineage-page": "image-lineage lineage-page --model pets-classifier --version 3",
}


def new_parser(command: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"image-lineage {command}", description=description,
                                   epilog=f"example: {EXAMPLES[command]}")


def log_folder_dataset() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import add_image_arguments, add_snapshot_argument, optional, parse_count

    parser = new_parser(
        "log-folder-dataset", "Log <data_dir>/<version>/<class>/<image> as one MLflow run: params dataset_version, "
        "dataset_name, num_classes, class_names; metrics total_images and class_<name>_count; artifacts "
        "samples/, manifest.json, diff.json, class_counts.png (and store.json.gz for large classes: their images go "
        "into the content store, each file once per server); "
        "a dataset input with a content digest; tag dataset.digest."
    )
    parser.add_argument("--data-dir", default="image_dataset", help="folder holding the version folders")
    parser.add_argument("--version", default="v1", help="version folder to log, e.g. v1")
    parser.add_argument("--dataset-name", default="cat_dog_dataset")
    parser.add_argument("--dataset-semver", type=optional, default="auto",
                        help="logged as param dataset_version; auto derives it from --version (v1 -> 1.0.0)")
    parser.add_argument("--run-name", type=optional, default="auto", help="run name; auto gives image_<version>, or <dataset-name>_<version> for another dataset name")
    parser.add_argument("--max-samples-per-class", type=parse_count, default=50,
                        help="images per class uploaded as samples/; larger classes go into the content store")
    add_image_arguments(parser)
    add_snapshot_argument(parser)
    parser.add_argument("--experiment-name", default=None,
                        help="experiment to log into when not started by `mlflow run`")
    return parser


def log_hf_dataset() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import add_image_arguments, optional
    from image_lineage.data.kinds import SPLIT_CHOICES
    from image_lineage.flows.hf_log import CONTEXT_CHOICES

    parser = new_parser(
        "log-hf-dataset", "Load an image folder, a COCO folder or hub:<name> as datasets.Dataset (one per split) and "
        "log each with mlflow.data.from_huggingface + log_input (content digest, reloadable source); params "
        "num_rows, num_classes, class_names, features, splits; metrics <split>/rows_<class> or "
        "<split>/instances_<category>; artifacts hf/<split>/features.json and class_balance.png; tag dataset.digest."
    )
    parser.add_argument("--source", default="image_dataset/v2", help="image folder, COCO folder, or hub:<name>")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                        help="split to log; all logs every split found (train*/val*/test* folders or annotation files)")
    parser.add_argument("--name", type=optional, default="auto", help="dataset name in the Datasets panel (auto: from the source)")
    parser.add_argument("--targets", type=optional, default="auto", help="label column (auto: 'label' when present)")
    parser.add_argument("--context", choices=CONTEXT_CHOICES, default="training")
    parser.add_argument("--revision", default="main", help="hub datasets only: branch, tag or commit")
    add_image_arguments(parser)
    parser.add_argument("--run-name", type=optional, default="auto", help="auto: hf_<name>")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def coco_finetune() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import add_image_arguments, add_snapshot_argument, optional, parse_count
    from image_lineage.flows.finetune_data import INPUTS
    from image_lineage.training.detection.engine import EVALUATORS
    from image_lineage.training.detection.detectors import MODELS

    parser = new_parser(
        "coco-finetune", "Train a Faster R-CNN on a COCO folder. Logs the annotation files, images (past "
        "--image-artifacts-max, in the content store), previews, class balance, validation report, the dataset "
        "input (content digest), per-step "
        "loss components, per-epoch COCOeval bbox mAP/mAP_50/mAP_75/small/medium/large, system metrics (GPU "
        "via pynvml), a checkpoint per epoch, and the model, registered and tagged with digest and categories."
    )
    add = parser.add_argument
    add("--data-dir", default="coco/sample", help="COCO folder: annotations/instances_<name>.json + <name>/")
    add("--train-split", default="train", help="split (train, validation) or layout name (train2017)")
    add("--val-split", default="validation", help="held out from the train split when absent")
    add("--input", choices=INPUTS, default="coco", help="coco: pycocotools-style reader; hf: the Hugging Face form")
    add("--model", choices=sorted(MODELS), default="fasterrcnn_resnet50_fpn")
    add("--weights", type=optional, default="DEFAULT", help="DEFAULT (torchvision COCO weights), none, or a state-dict path")
    add("--epochs", type=parse_count, default=1)
    add("--batch-size", type=parse_count, default=2)
    add("--lr", type=float, default=0.005)
    add("--num-workers", type=parse_count, default=0,
        help="DataLoader processes; 0 is usually fastest: each batch's images decode on threads in this process")
    add("--max-images", type=parse_count, default=0, help="images per split, 0 = all")
    add("--image-size", type=parse_count, default=0, help="resize so both sides fit this; 0 = the model's default")
    add("--amp", type=optional, default="auto", help="mixed precision: on, off, or auto (on with CUDA)")
    add("--device", type=optional, default="auto", help="cpu, cuda, or auto (cuda when there is one)")
    add("--seed", type=parse_count, default=42)
    add("--resume-from", type=optional, default="none", help="run id whose last checkpoint to continue from (next epoch); none")
    add("--register-as", default="fasterrcnn_resnet50_fpn_coco_2017_model", help="registered model name")
    add("--eval-every", type=parse_count, default=1, help="COCOeval every N epochs (and after the last)")
    add("--evaluator", choices=EVALUATORS, default=EVALUATORS[0],
        help="COCOeval implementation: faster-coco-eval (C++, same numbers) or pycocotools")
    add("--image-artifacts-max", type=parse_count, default=200,
        help="up to this many images per split are uploaded as files; more go, with the annotation file, "
             "into the content store")
    add("--previews", type=parse_count, default=8, help="annotated preview images per split")
    add("--preview-images", type=parse_count, default=8,
        help="validation images drawn with predictions (score >= 0.5) and ground truth after each evaluation, "
        "logged as one image per epoch under key val_predictions")
    add_image_arguments(parser)
    add_snapshot_argument(parser)
    add("--nproc-per-node", type=parse_count, default=1,
        help="processes to train on (DDP): more than 1 starts them with torchrun; only rank 0 talks to MLflow")
    add("--run-name", default="coco_finetune")
    add("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def check_dataset() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import add_image_arguments, optional, parse_count
    from image_lineage.core.names import ON_LEAKAGE_CHOICES
    from image_lineage.quality.pairs import DEFAULT_THRESHOLD

    parser = new_parser(
        "check-dataset", "Find exact duplicates (same sha256), near-duplicates (perceptual hash: resized, re-encoded, "
        "cropped, brightened copies), leakage (such a pair in two splits) and label conflicts in an image folder "
        "(train*/, val*/, test*/ splits of class folders, or class folders) or a COCO folder. Logs metrics "
        "quality/exact_duplicate_pairs, quality/near_duplicate_pairs, quality/leakage_pairs, quality/label_conflicts, "
        "tag quality.status (clean, duplicates, leakage), artifacts quality/pairs.csv and quality/report.html."
    )
    parser.add_argument("--source", default="image_dataset/v2", help="image folder or COCO folder")
    add_image_arguments(parser, leakage_check=False)
    parser.add_argument("--on-leakage", choices=ON_LEAKAGE_CHOICES, default="warn",
                        help="warn, fail (the run ends FAILED, its report logged) or ignore")
    parser.add_argument("--threshold", type=parse_count, default=DEFAULT_THRESHOLD,
                        help="near-duplicate distance in bits of the 64-bit perceptual hash (a pair more than half "
                             "of it apart is kept only when the pictures' corners agree, where they can tell)")
    parser.add_argument("--run-name", type=optional, default="auto", help="auto: check_<dataset name>")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def train_registry() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import parse_count
    from image_lineage.flows.registry_lab import SUITES
    from image_lineage.training.digits.mnist import SOURCES

    parser = new_parser(
        "train-registry", "Per suite, three versions in child runs (params, accuracy/F1 or per-epoch loss/accuracy, "
        "train/test inputs with content digests), registered as wine-quality-classifier / mnist-digit-classifier "
        "with description, tags and aliases baseline, champion, staging; the champion predicts; the comparison "
        "table is logged as registry/*_versions.md and .csv."
    )
    parser.add_argument("--suite", choices=SUITES, default="both")
    parser.add_argument("--mnist-dir", default="mnist_data",
                        help="folder with MNIST IDX files (train and/or t10k, .gz or not); downloaded when empty")
    parser.add_argument("--mnist-source", choices=SOURCES, default="idx",
                        help="idx: the files in --mnist-dir; sklearn-digits: scikit-learn's 8x8 digits at 28x28, offline")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiplies every version's epochs (50/100/150), at least 1 epoch each")
    parser.add_argument("--team", default="ml-platform", help="registered-model tag 'team'")
    parser.add_argument("--seed", type=parse_count, default=42)
    parser.add_argument("--run-name", default="train_registry")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def compare() -> argparse.ArgumentParser:
    from image_lineage.cli.arguments import optional, optional_list, parse_bool

    parser = new_parser(
        "compare", "Print one row per dataset version of an experiment (run name, version, total images, "
        "one column per class, num classes, digest, diff), a table per registered model (version, algorithm, "
        "metrics, aliases, dataset digest, run id) and the lineage (datasets each model version used); log them "
        "under compare/ as CSV, Markdown and HTML with PNG plots (class counts per version, metrics per version)."
    )
    parser.add_argument("--experiment", type=optional, default="none",
                        help="experiment whose versions are compared; the compare run is logged into it. none: "
                        "the run's own experiment (mlflow run --experiment-name), or MLFLOW_EXPERIMENT_NAME")
    parser.add_argument("--models", type=optional_list, default="auto",
                        help="comma-separated registered model names; auto: those with versions from this experiment")
    parser.add_argument("--output-dir", default="compare_output", help="local folder for the tables and plots (in a sub-folder per experiment)")
    parser.add_argument("--screenshots", type=parse_bool, default=False,
                        help="true: PNGs of the MLflow UI (experiment, a run's datasets, a model) with headless Chromium")
    parser.add_argument("--run-name", default="compare")
    return parser


def workflow() -> argparse.ArgumentParser:
    from image_lineage.core.names import IMAGE_CHECK_CHOICES

    parser = new_parser(
        "workflow", "Run every entry point on the bundled data as child runs (reusing unchanged steps) and "
        "finish with compare; logs workflow_steps.json (step, entry point, parameters, run id, reused, seconds)."
    )
    parser.add_argument("--image-dir", default="image_dataset", help="cat/dog version folders")
    parser.add_argument("--coco-dir", default="coco/sample", help="COCO folder for the HF and detection steps")
    parser.add_argument("--image-check", choices=IMAGE_CHECK_CHOICES, default="structure",
                        help="image check of every step that reads images: structure, decode or none")
    parser.add_argument("--project-dir", default=".", help="the project the steps run from")
    parser.add_argument("--run-name", default="main")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def download() -> argparse.ArgumentParser:
    parser = new_parser("download", "Rebuild the image files of a logged dataset version (a run of log-folder-dataset, "
                        "log-hf-dataset or coco-finetune) in a new or empty folder, from the content store's packs; "
                        "every file is checked against its sha256 and a mismatch is refused, naming the file.")
    parser.add_argument("--run-id", required=True, help="the run that logged the version")
    parser.add_argument("--destination", required=True, help="a new or empty folder")
    parser.add_argument("--croissant", action="store_true",
                        help="also write the version's croissant.json and manifest beside the class folders (mlcroissant "
                        "then loads it and iterates the images)")
    parser.add_argument("--no-files", dest="files", action="store_false",
                        help="with --croissant: only croissant.json and the manifests it names (a Hugging Face form of a "
                        "hub dataset stores no files)")
    return parser


def orphans() -> argparse.ArgumentParser:
    parser = new_parser("orphans", "List what deleting runs or experiments would do to the content store: the packs "
                        "only they list (orphaned: gc removes them once the runs are deleted) and those other active "
                        "runs still list (kept).")
    parser.add_argument("--run-id", dest="run_ids", action="append", default=[], help="a run to delete (repeatable)")
    parser.add_argument("--experiment", dest="experiments", action="append", default=[],
                        help="an experiment name or id to delete (repeatable)")
    return parser


def trace() -> argparse.ArgumentParser:
    parser = new_parser("trace", "Every dataset version that holds an image's bytes (its paths, labels and splits), "
                        "every run that logged, checked or trained on those versions, and every registered model "
                        "version those runs made, with its aliases; across all experiments you can read. For a folder: "
                        "which of its images were ever logged, and where.")
    parser.add_argument("what", help="an image file, a folder, a sha256 (or its first 8+ hex digits), or a path inside "
                        "a logged version such as cat/cat_01.jpg")
    add_index_argument(parser)
    parser.add_argument("--no-refresh", dest="refresh", action="store_false",
                        help="answer from the index as it is, without asking the tracking server for new runs")
    return parser


def lineage_page() -> argparse.ArgumentParser:
    parser = new_parser("lineage-page", "Write one self-contained HTML file for a registered model version: its aliases "
                        "and run, every run of its datasets, and each dataset version (digest, images per class, diff, "
                        "the leakage check with its flagged pairs as thumbnails, sample images per class); open it in "
                        "a browser, no server needed. compare logs one for the versions it compares.")
    parser.add_argument("--model", required=True, help="registered model name")
    parser.add_argument("--version", required=True, help="its version number")
    parser.add_argument("--output", default=None, help="the HTML file (default: lineage_<model>_v<version>.html)")
    add_index_argument(parser)
    return parser


def add_index_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", default=None, help="the trace index file (default: one per tracking server under "
                        "$IMAGE_LINEAGE_CACHE_DIR/trace; rebuilt from the tracking server when missing)")


def gc() -> argparse.ArgumentParser:
    parser = new_parser("gc", "List the content store's packs no active run lists; with --delete, remove them (their "
                        "store runs deleted, their bytes erased). Packs younger than --min-age-hours are left: a "
                        "version being logged right now has uploaded its packs but not yet listed them.")
    parser.add_argument("--delete", action="store_true", help="remove them (default: a dry run that only lists)")
    parser.add_argument("--min-age-hours", type=float, default=1.0)
    return parser

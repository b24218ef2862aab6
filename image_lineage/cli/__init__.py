"""The command line: ``image-lineage <command> [flags]``, one command per entry point of the MLproject.

``mlflow run . -e <entry>`` runs ``python -m entrypoints.<entry>``, a two-line module at the repository's
top level that names its command here; installed, the same commands are ``image-lineage <command>`` (and
the older one-word scripts). Each command parses its flags (:mod:`.parsers`) into its flow's request and
calls that one flow inside :func:`.edge.run_entry_point` (tracking set up, clear errors).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, fields

from image_lineage.cli import parsers
from image_lineage.cli.edge import run_entry_point, run_on_processes


@dataclass(frozen=True)
class Command:
    """A command: its parser, its flow (``module:RequestClass:function``) and one line for the command list."""

    parser: object
    flow: str
    summary: str
    entry_point: str | None  # the MLproject entry point that runs it (None: the store's commands log no run)


COMMANDS = {
    "log-folder-dataset": Command(parsers.log_folder_dataset, "folder_version:FolderVersionRequest:log_folder_version",
                                  "one version of an image folder as one run (the homework)", "log_folder_dataset"),
    "log-hf-dataset": Command(parsers.log_hf_dataset, "hf_log:HfRequest:log_hf_dataset",
                              "a folder, COCO or hub dataset in its Hugging Face form", "log_hf_dataset"),
    "check-dataset": Command(parsers.check_dataset, "check:CheckRequest:check_dataset",
                             "duplicates, near-duplicates and leakage between splits", "check_dataset"),
    "coco-finetune": Command(parsers.coco_finetune, "finetune:FinetuneRequest:run_finetune",
                             "fine-tune a Faster R-CNN on a COCO folder, data and model in one run", "coco_finetune"),
    "train-registry": Command(parsers.train_registry, "registry_lab:RegistryRequest:run_registry_workflow",
                              "three versions per suite, registered, aliases by accuracy", "train_registry"),
    "compare": Command(parsers.compare, "comparison:CompareRequest:run_compare",
                       "dataset and model versions side by side, and the lineage", "compare"),
    "workflow": Command(parsers.workflow, "workflow:MainRequest:run_main",
                        "every step on the bundled data, as child runs (mlflow run .)", "main"),
    "download": Command(parsers.download, "store_admin:DownloadRequest:download_dataset",
                        "a logged version's files into a folder, each checked by sha256", None),
    "orphans": Command(parsers.orphans, "store_admin:OrphansRequest:list_orphans",
                       "what deleting runs or experiments would orphan in the content store", None),
    "trace": Command(parsers.trace, "trace:TraceRequest:run_trace",
                     "from an image, a folder or a sha256 to every version, run and model that used it", None),
    "lineage-page": Command(parsers.lineage_page, "lineage_page:LineagePageRequest:write_lineage_page",
                            "one HTML file: a model version, its runs, its datasets, their pictures", None),
    "gc": Command(parsers.gc, "store_admin:GcRequest:collect_store_garbage",
                  "remove the content store's packs no active run lists (dry run by default)", None),
}


def run_command(name: str, argv: list[str] | None = None) -> int:
    """Parse ``argv`` for command ``name`` and run its flow; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = COMMANDS[name]
    args = vars(command.parser().parse_args(argv))
    module, request_class, function = command.flow.split(":")
    flow = importlib.import_module(f"image_lineage.flows.{module}")
    nproc = args.pop("nproc_per_node", 1)
    request = getattr(flow, request_class)(**args)
    work = lambda: getattr(flow, function)(request)  # noqa: E731
    return run_on_processes([name, *argv], nproc, work) if nproc > 1 else run_entry_point(work)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return ("usage: image-lineage <command> [flags]   (image-lineage <command> --help: its flags and an example)\n\n"
            "commands:\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``image-lineage <command> [flags]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"image-lineage: unknown command {argv[0]!r}\n\n{usage()}", end="", file=sys.stderr)
        return 2
    return run_command(argv[0], argv[1:])


def entry_point(name: str):
    """(build_parser, main) of the command an MLproject entry point runs (``entrypoints/<name>.py``)."""
    command = next(key for key, value in COMMANDS.items() if value.entry_point == name)
    return COMMANDS[command].parser, lambda argv=None: run_command(command, argv)


def request_fields(name: str) -> list[str]:
    """The request fields of a command's flow (for tests comparing flags, MLproject and requests)."""
    module, request_class, _ = COMMANDS[name].flow.split(":")
    return [f.name for f in fields(getattr(importlib.import_module(f"image_lineage.flows.{module}"), request_class))]


# the one-word scripts of earlier releases, kept as aliases (pyproject's [project.scripts])
def log_folder_dataset() -> int:
    return run_command("log-folder-dataset")


def log_hf_dataset() -> int:
    return run_command("log-hf-dataset")


def check_dataset() -> int:
    return run_command("check-dataset")


def coco_finetune() -> int:
    return run_command("coco-finetune")


def train_registry() -> int:
    return run_command("train-registry")


def compare() -> int:
    return run_command("compare")


def workflow() -> int:
    return run_command("workflow")

"""docs/ says what the code does: each entry point's parameters in docs/entry-points.md are the parser's (no
missing, no stale row), every docs page is linked from the README, and the README stays a five-minute read."""

import re

import pytest
import yaml
from tests_paths import PROJECT_ROOT

from image_lineage.cli import entry_point

DOCS = PROJECT_ROOT / "docs"
CLI_ONLY = {"experiment_name", "project_dir"}  # flags for use outside `mlflow run` (see test_entrypoints)


def sections(text: str) -> dict[str, str]:
    """{entry point: its section} of docs/entry-points.md (sections titled "## `name`...")."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^## `(\w+)`[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)}


ENTRY_POINTS = sorted(yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"])


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_each_parameter_is_documented_and_no_stale_one(name):
    section = sections((DOCS / "entry-points.md").read_text())[name]
    parser, _ = entry_point(name)
    parameters = {a.dest for a in parser()._actions if a.dest != "help"} - CLI_ONLY
    documented = set(re.findall(r"`(\w+)`", section))
    assert parameters <= documented, f"{name}: undocumented parameters {sorted(parameters - documented)}"
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    in_tables = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert in_tables <= parameters, f"{name}: the table documents parameters it does not have: {in_tables - parameters}"


def test_every_docs_page_is_linked_from_the_readme_which_stays_short():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", readme))
    assert linked == {page.name for page in DOCS.glob("*.md")}
    for page in DOCS.glob("*.md"):  # links between pages and to pictures resolve
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (DOCS / target).exists(), f"{page.name} links to {target}, which is not there"

"""The library's layers point one way, and its tree says so (no two modules share a name, none is long).

Layers, bottom to top: core <- data <- quality <- tracking <- training <- flows <- api (the public API) <-
plugins (MLflow's entry points) <- cli (and the package's own ``__init__``). A module imports only from its own layer and those below it; the data, quality and
training layers never import ``mlflow``, not even through a module of ours (the whole import graph is walked).
"""

import ast
import sys
from pathlib import Path

from tests_paths import PROJECT_ROOT

LIBRARY = PROJECT_ROOT / "image_lineage"
LAYERS = ["core", "data", "quality", "tracking", "training", "flows", "api", "plugins", "cli"]
WITHOUT_MLFLOW = {"core", "data", "quality", "training"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in LIBRARY.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def own_imports(module: str, known: dict[str, Path]) -> set[str]:
    return {name for name in imports_of(known[module]) if name in known and name != module}


def test_every_module_belongs_to_a_layer():
    strays = [m for m in modules() if m.count(".") and layer_of(m) is None and not m.endswith("__main__")]
    assert not strays, f"modules outside the layers {LAYERS}: {strays}"


def test_layers_import_only_downwards():
    known = modules()
    wrong = []
    for module in known:
        layer = layer_of(module)
        if layer is None:
            continue
        for imported in own_imports(module, known):
            target = layer_of(imported)
            if target is not None and LAYERS.index(target) > LAYERS.index(layer):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_data_quality_and_training_never_reach_mlflow():
    """Walks the import graph from every module of those layers: neither they nor anything of ours they
    import (directly or further down) imports mlflow."""
    known = modules()
    for module in (m for m in known if layer_of(m) in WITHOUT_MLFLOW):
        seen, stack = set(), [module]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            direct = imports_of(known[current])
            assert not any(name == "mlflow" or name.startswith("mlflow.") for name in direct), \
                f"{module} reaches mlflow through {current}"
            stack.extend(own_imports(current, known))


def test_the_data_layer_loads_without_mlflow_in_the_process():
    """The same, as Python sees it: importing every data-layer module in a fresh process loads no mlflow."""
    import subprocess

    data_modules = [m for m in modules() if layer_of(m) in WITHOUT_MLFLOW - {"training"}]
    code = "import sys\n" + "".join(f"import {m}\n" for m in data_modules) + \
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_no_two_modules_share_a_name_and_none_is_long():
    known = modules()
    names: dict[str, list[str]] = {}
    for module in known:
        leaf = module.rsplit(".", 1)[-1]
        if leaf not in ("__init__", "__main__") and module.count("."):
            names.setdefault(leaf, []).append(module)
    entrypoints = {p.stem for p in (PROJECT_ROOT / "entrypoints").glob("*.py")} - {"__init__"}
    shared = {leaf: mods for leaf, mods in names.items() if len(mods) > 1 or leaf in entrypoints}
    assert not shared, f"module names used twice (or by an entry point too): {shared}"
    long = {module: n for module, path in known.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_distribution_installs_no_top_level_name_but_its_own():
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["image_lineage*"]
    assert project["project"]["scripts"]["image-lineage"] == "image_lineage.cli:main"
    assert "playwright" not in " ".join(project["project"]["dependencies"])  # the screenshots extra


def test_environment_variables_are_read_in_the_config_module_only():
    """``os.environ`` / ``os.getenv`` appear in image_lineage/core/config.py alone."""
    readers = []
    for module, path in modules().items():
        if module == "image_lineage.core.config":
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text or "getenv(" in text:
            readers.append(module)
    assert not readers, f"environment read outside core/config.py: {readers}"


def test_private_mlflow_and_datasets_names_only_in_the_compat_module():
    """Private names of MLflow or datasets (``_to_mlflow_entity``, ``mlflow.x._y``, ``._indices``, ...) are
    used in image_lineage/tracking/_compat.py alone."""
    offenders = []
    for module, path in modules().items():
        if module == "image_lineage.tracking._compat":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("mlflow", "datasets")):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{module}: from {node.module} import {', '.join(a.name for a in node.names)}")
            if isinstance(node, ast.Attribute) and node.attr in ("_to_mlflow_entity", "_indices", "_registry",
                                                                 "_cached_get_request_session", "_infer_schema"):
                offenders.append(f"{module}: .{node.attr}")
    assert not offenders, "\n".join(offenders)

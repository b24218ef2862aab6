"""Model-registry bookkeeping: descriptions, tags, and aliases assigned by measured scores.

Alias rules (documented in the README): ``baseline`` -> the version named as baseline; ``champion`` -> the
highest accuracy; ``staging`` -> the second highest. Ties are broken by F1, then by the newer version.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow


@dataclass(frozen=True)
class VersionScore:
    version: str
    accuracy: float
    f1: float


def rank_versions(scores: list[VersionScore]) -> list[VersionScore]:
    """Best first: accuracy, then F1, then the newer version."""
    return sorted(scores, key=lambda s: (s.accuracy, s.f1, int(s.version)), reverse=True)


def assign_aliases(name: str, scores: list[VersionScore], baseline_version: str) -> dict[str, str]:
    """Point ``baseline``, ``champion`` and ``staging`` at versions of ``name``; return alias -> version."""
    ranked = rank_versions(scores)
    aliases = {"baseline": baseline_version, "champion": ranked[0].version}
    if len(ranked) > 1:
        aliases["staging"] = ranked[1].version
    client = mlflow.MlflowClient()
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, version)
    return aliases


def status_of(version: str, aliases: dict[str, str]) -> str:
    """The ``status`` version tag: champion, baseline or improved."""
    if aliases["champion"] == version:
        return "champion"
    return "baseline" if aliases["baseline"] == version else "improved"


def describe_model(name: str, description: str, tags: dict[str, str]) -> None:
    client = mlflow.MlflowClient()
    client.update_registered_model(name, description=description)
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def find_model(name: str):
    """The registered model ``name``, or a LookupError listing the registered models that exist."""
    client = mlflow.MlflowClient()
    try:
        return client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise LookupError(f"registered model {name!r} not found; registered models: {', '.join(names) or 'none'}.") from None

"""What changed between two manifests of a dataset: added, removed, modified and relabelled images."""

from __future__ import annotations

import os

from image_lineage.data.folders import Manifest


def diff_manifests(old: Manifest | None, new: Manifest, old_name: str | None = None, new_name: str | None = None) -> dict:
    """What changed from ``old`` to ``new`` (named ``old_name`` and ``new_name``, by default their folders'
    names): added, removed, modified (same path, other bytes) and relabelled (same bytes, now in another
    class). Paths are relative to the version folders."""
    old_records = {r.path: r for r in old.records} if old else {}
    new_records = {r.path: r for r in new.records}
    removed = {p: r for p, r in old_records.items() if p not in new_records}
    added = {p: r for p, r in new_records.items() if p not in old_records}
    modified = sorted(p for p in new_records.keys() & old_records.keys() if new_records[p].sha256 != old_records[p].sha256)
    relabelled = []
    removed_by_hash = {}
    for path, record in removed.items():
        removed_by_hash.setdefault(record.sha256, []).append(path)
    for path, record in sorted(added.items()):
        sources = [p for p in removed_by_hash.get(record.sha256, []) if removed[p].label != record.label]
        if sources:
            source = sources[0]
            removed_by_hash[record.sha256].remove(source)
            relabelled.append({"from": source, "to": path, "from_label": removed[source].label, "to_label": record.label})
    moved_from = {item["from"] for item in relabelled}
    moved_to = {item["to"] for item in relabelled}
    return {
        "old_version": (old_name or os.path.basename(old.version_dir)) if old else None,
        "new_version": new_name or os.path.basename(new.version_dir),
        "added": sorted(p for p in added if p not in moved_to),
        "removed": sorted(p for p in removed if p not in moved_from),
        "modified": modified,
        "relabelled": relabelled,
        "unchanged": len(new_records.keys() & old_records.keys()) - len(modified),
    }


def summarize_diff(diff: dict) -> str:
    """One line for tables: ``v1→v2: +2 -1 ~0 relabelled 0``."""
    base = diff["old_version"] or "(none)"
    return (
        f"{base}->{diff['new_version']}: +{len(diff['added'])} -{len(diff['removed'])} "
        f"~{len(diff['modified'])} relabelled {len(diff['relabelled'])}"
    )

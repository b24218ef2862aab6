"""Croissant metadata (MLCommons, http://mlcommons.org/croissant/1.0) of a folder version, of COCO splits, or of
a dataset's Hugging Face form: ``croissant.json``.

One JSON-LD file says what the version holds in the format dataset hubs and ML tools read (the Hugging Face
hub serves one for every dataset; NeurIPS Datasets & Benchmarks asks for one):

* metadata: name, description, the source's location as ``url``, and as ``version`` the version's number with
  the content digest as its build metadata (``2.0.0+<sha256>``: semantic versioning, as Croissant asks, and
  the digest every run and model of this project names);
* distribution: ``manifest.json`` (a ``FileObject`` with its sha256; the manifest gives every file's sha256),
  and the images as a ``FileSet`` (``<class>/*.<ext>`` patterns, the files the image pass left out excluded);
* record sets: ``images`` (each image's content and its label, the class folder's name) and ``files`` (each
  image's path, label, sha256, size, width and height, from the manifest);
* the Responsible-AI and citation fields the user gives in ``croissant.yaml`` beside the version folder or
  in it (:data:`CARD_FIELDS`); a field not given is left out, never invented.

The Hugging Face form (:func:`hf_metadata`) describes each split the run logged: a split read from files by
its manifest (``hf/<split>/manifest.json``, as the run stores it) and its images where the source holds them;
a hub dataset's split by the hub's own Parquet conversion, as the hub's Croissant does.

It depends on content and the card only (no run id, no date), so a re-log of the same folder gives the same
file. ``mlcroissant`` loads it, and iterates its records on a local copy of the version with the file beside
the class folders (the tests check both).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from image_lineage.core.errors import LineageError
from image_lineage.data.object_store import is_object_uri

CARD_NAME = "croissant.yaml"
CROISSANT_NAME = "croissant.json"
# the fields a card may give: schema.org's, Croissant's citeAs, and the RAI vocabulary's (rai:...)
CARD_FIELDS = ("license", "citeAs", "creator", "publisher", "keywords", "datePublished", "description")
RAI_FIELD = re.compile(r"^rai:[A-Za-z]+$")
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet", "format": "cr:format",
    "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path", "recordSet": "cr:recordSet",
    "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated", "replace": "cr:replace",
    "samplingRate": "cr:samplingRate", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform",
}
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
               "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff"}
MANIFEST_FIELDS = (("path", "sc:Text"), ("label", "sc:Text"), ("sha256", "sc:Text"), ("size", "sc:Integer"),
                   ("width", "sc:Integer"), ("height", "sc:Integer"))


def version_metadata(manifest, name: str, semver: str, url: str, card: dict | None = None) -> dict:
    """The Croissant JSON-LD of a version (``manifest``: :class:`image_lineage.data.folders.Manifest`, whose
    file as the run holds it is :meth:`~image_lineage.data.folders.Manifest.stored`)."""
    manifest_name, manifest_bytes = manifest.stored()
    counts = manifest.class_counts()
    classes = [label for label in manifest.classes if counts.get(label)]
    metadata = {
        "@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name, "url": url, "version": f"{semver}+{manifest.digest}",
        "description": (f"{name}: {len(manifest.records)} images in {len(classes)} class folders "
                        f"({', '.join(classes)}); content digest sha256 {manifest.digest}."),
        "distribution": [manifest_file(manifest_name, manifest_bytes), image_file_set(manifest)],
        "recordSet": [images_record_set(), files_record_set(manifest_name)],
    }
    metadata.update(card or {})
    return metadata


def coco_metadata(name: str, digest: str, url: str, splits: list[tuple[str, Path, list[str]]], card: dict | None = None) -> dict:
    """The Croissant JSON-LD of COCO splits as a run stores them, and ``download`` rebuilds them: per split,
    ``<split>/<annotation file>`` and ``<split>/images/<file_name>``. ``splits``: (split, annotation file, the
    ``file_name`` of each image in the split). A COCO source has no version number here: ``1.0.0`` with the
    content digest (every split's) as build metadata names the bytes."""
    categories = json.loads(splits[0][1].read_bytes()).get("categories", [])
    distribution, record_sets = [], []
    for split, annotation, file_names in splits:
        files, records = coco_annotation_parts(split, annotation, with_categories=split == splits[0][0])
        distribution += [*files, coco_image_file_set(split, file_names)]
        record_sets += [coco_images_record_set(split), *records]
    metadata = {
        "@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name, "url": url, "version": f"1.0.0+{digest}",
        "description": (f"{name}: COCO detection splits {', '.join(s for s, _, _ in splits)} "
                        f"({', '.join(f'{len(f)} images' for _, _, f in splits)}), {len(categories)} categories; "
                        f"content digest sha256 {digest}."),
        "distribution": distribution, "recordSet": record_sets,
    }
    metadata.update(card or {})
    return metadata


@dataclass(frozen=True)
class FileSplit:
    """A split of a Hugging Face form read from image files: its manifest (stored in the run at
    ``hf/<split>/``) and where its images are beside ``croissant.json``: ``images`` + the manifest's path
    (``train/`` for a split folder of an image folder; ``<split>/images/`` for COCO, as ``download`` lays it out)."""

    split: str
    manifest: object  # :class:`image_lineage.data.folders.Manifest`
    images: str = ""
    coco: bool = False  # labels are the categories of the image's objects (the manifest's), not a class folder
    annotation: Path | None = None  # COCO: the split's annotation file (its boxes and categories)
    categories: bool = False  # COCO: the first split also describes the categories


@dataclass(frozen=True)
class HubSplit:
    """A split of a hub dataset: its repository, and its features (``datasets.Features``) for the fields."""

    split: str
    repo: str
    features: dict
    revision: str | None = None  # the branch, tag or commit logged; the hub converts its default branch only


def hf_metadata(name: str, digest: str, url: str, splits: list, card: dict | None = None) -> dict:
    """The Croissant JSON-LD of a dataset's Hugging Face form (``splits``: :class:`FileSplit` or
    :class:`HubSplit` each), laid out as the run stores it."""
    distribution, record_sets = [], []
    for split in splits:
        files, records = file_split_parts(split) if isinstance(split, FileSplit) else hub_split_parts(split)
        distribution += [item for item in files if item not in distribution]  # one hub repository for all splits
        record_sets += records
    sizes = ", ".join(f"{s.split} ({len(s.manifest.records)} images)" if isinstance(s, FileSplit) else s.split
                      for s in splits)
    metadata = {
        "@context": CONTEXT, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name, "url": url, "version": f"1.0.0+{digest}",
        "description": f"{name}, in its Hugging Face form: splits {sizes}; content digest sha256 {digest}.",
        "distribution": distribution, "recordSet": record_sets,
    }
    metadata.update(card or {})
    return metadata


def file_split_parts(split: FileSplit) -> tuple[list[dict], list[dict]]:
    """The split's manifest and images, and record sets ``<split>_images`` and ``<split>_files`` (and a COCO
    split's annotation file, boxes and categories), with the ids the folder version's and COCO's use."""
    manifest_name, manifest_bytes = split.manifest.stored()
    stored = f"hf/{split.split}/{manifest_name}"
    # the files the image pass left out (bad images, on_bad_image=skip) are excluded: the patterns would catch them
    # (a COCO split names them <layout name>/<file_name>)
    left_out = [item["path"].split("/", 1)[1] if split.coco else item["path"] for item in split.manifest.ignored
                if "/" in item["path"]]
    images = image_files_set(f"{split.split}-images", [f"{split.images}{r.path}" for r in split.manifest.records],
                             [f"{split.images}{path}" for path in left_out])
    distribution = [manifest_file(stored, manifest_bytes), images]
    record_sets = [coco_images_record_set(split.split) if split.coco
                   else images_record_set(f"{split.split}_images", f"{split.split}-images"),
                   files_record_set(stored, f"{split.split}_files",
                                    f"every image of split {split.split} with its sha256, from the manifest"
                                    + (" (label: the categories of its objects)" if split.coco else ""))]
    if split.annotation is not None:
        annotation_files, annotation_records = coco_annotation_parts(split.split, split.annotation, split.categories)
        distribution, record_sets = distribution + annotation_files, record_sets + annotation_records
    return distribution, record_sets


# datasets' Value dtypes as Croissant 1.0 data types (what the hub's own Croissant says of them)
VALUE_TYPES = {"bool": "sc:Boolean", "string": "sc:Text", "large_string": "sc:Text", "float16": "sc:Float",
               "float32": "sc:Float", "float64": "sc:Float", "date32": "sc:Date", "date64": "sc:Date",
               **{f"{sign}int{bits}": "sc:Integer" for sign in ("", "u") for bits in (8, 16, 32, 64)}}


def hub_split_parts(split: HubSplit) -> tuple[list[dict], list[dict]]:
    """The hub's Parquet conversion of the split (branch ``refs/convert/parquet``: ``<config>/<split>/*.parquet``),
    the repository it is in, and a record set of the columns Croissant 1.0 can name (an ``Image`` column's
    ``bytes``, a ``ClassLabel``'s integer, plain values); others are named in the description, not guessed."""
    # a git repository has no file checksum, yet Croissant 1.0 asks a FileObject for one: the hub's own
    # Croissant names the open question (croissant issue 80) in its place, and so does this; the rows are named
    # by the content digest in ``version``
    repo = {"@type": "cr:FileObject", "@id": "hub-repository", "name": "hub-repository",
            "description": (f"the Hugging Face hub repository of {split.repo}, branch refs/convert/parquet; a git "
                            f"repository has no file checksum: the rows' content digest is the version's build metadata"),
            "contentUrl": f"https://huggingface.co/datasets/{split.repo}/tree/refs%2Fconvert%2Fparquet",
            "encodingFormat": "git+https", "sha256": "https://github.com/mlcommons/croissant/issues/80"}
    parquet = {"@type": "cr:FileSet", "@id": f"{split.split}-parquet", "name": f"{split.split}-parquet",
               "containedIn": {"@id": "hub-repository"}, "encodingFormat": "application/x-parquet",
               "includes": f"*/{split.split}/*.parquet"}
    fields, left_out = [], []
    for column, feature in split.features.items():
        kind = feature.get("_type") if isinstance(feature, dict) else None
        data_type = ("sc:ImageObject" if kind == "Image" else "sc:Integer" if kind == "ClassLabel"
                     else VALUE_TYPES.get(feature.get("dtype")) if kind == "Value" else None)
        if data_type is None:
            left_out.append(column)
            continue
        source = {"fileSet": {"@id": f"{split.split}-parquet"}, "extract": {"column": column},
                  **({"transform": {"jsonPath": "bytes"}} if kind == "Image" else {})}
        description = ({"description": "class index: " + ", ".join(f"{i} = {n}" for i, n in enumerate(feature["names"]))}
                       if kind == "ClassLabel" and feature.get("names") else {})
        fields.append({"@type": "cr:Field", "@id": f"{split.split}/{column}", "name": column, "dataType": data_type,
                       **description, "source": source})
    notes = [f"columns not described (nested or of a type Croissant 1.0 cannot name): {', '.join(left_out)}"
             if left_out else "",
             f"logged at revision {split.revision}; the hub's Parquet conversion is of its default branch, so the "
             f"content digest in version names the rows logged" if split.revision not in (None, "", "main") else ""]
    record_set = {"@type": "cr:RecordSet", "@id": split.split, "name": split.split, "field": fields,
                  **({"description": "; ".join(n for n in notes if n)} if any(notes) else {})}
    return [repo, parquet], [record_set]


def coco_annotation_parts(split: str, annotation: Path, with_categories: bool) -> tuple[list[dict], list[dict]]:
    """A COCO split's annotation file as the run stores it (``<split>/<file>``) and its record sets
    ``<split>_boxes`` and, ``with_categories``, ``categories``."""
    data = annotation.read_bytes()
    parts = ("annotations", "categories") if with_categories else ("annotations",)
    # mlcroissant reads a JSON FileObject once for every record set that extracts from it, and needs their
    # columns of one length: one FileObject per record set (the same file, the same sha256) reads each alone
    files = [{**json_file(f"{split}/{annotation.name}", data), "@id": f"{split}-{part}-file", "name": f"{split}-{part}-file"}
             for part in parts]
    return files, [coco_boxes_record_set(split), *((coco_categories_record_set(split),) if with_categories else ())]


def json_file(path: str, data: bytes) -> dict:
    return {"@type": "cr:FileObject", "@id": path, "name": path, "contentUrl": path,
            "encodingFormat": "application/json", "sha256": hashlib.sha256(data).hexdigest()}


def coco_image_file_set(split: str, file_names: list[str]) -> dict:
    return image_files_set(f"{split}-images", [f"{split}/images/{name}" for name in file_names])


def coco_images_record_set(split: str) -> dict:
    source = {"fileSet": {"@id": f"{split}-images"}}
    return {"@type": "cr:RecordSet", "@id": f"{split}_images", "name": f"{split}_images", "field": [
        {"@type": "cr:Field", "@id": f"{split}_images/image", "name": "image", "dataType": "sc:ImageObject",
         "source": {**source, "extract": {"fileProperty": "content"}}},
        {"@type": "cr:Field", "@id": f"{split}_images/file_name", "name": "file_name", "dataType": "sc:Text",
         "description": "the image's file_name in the annotation file",
         "source": {**source, "extract": {"fileProperty": "filepath"}, "transform": {"regex": f"^(?:.*/)?{re.escape(split)}/images/(.+)$"}}},
    ]}


def coco_boxes_record_set(split: str) -> dict:
    def field(name, data_type, key, **extra):
        return {"@type": "cr:Field", "@id": f"{split}_boxes/{name}", "name": name, "dataType": data_type, **extra,
                "source": {"fileObject": {"@id": f"{split}-annotations-file"}, "extract": {"jsonPath": f"$.annotations[*].{key}"}}}

    return {"@type": "cr:RecordSet", "@id": f"{split}_boxes", "name": f"{split}_boxes",
            "description": ("every object of the annotation file as stored (with max_images, the file also lists "
                            "images the split does not hold): its image, category and box"), "field": [
                field("image_id", "sc:Integer", "image_id"), field("category_id", "sc:Integer", "category_id"),
                field("bbox_xywh", "sc:Float", "bbox", repeated=True,
                      description="the box in COCO's own format: x, y of its top-left corner, width, height (pixels)")]}


def coco_categories_record_set(split: str) -> dict:
    source = {"fileObject": {"@id": f"{split}-categories-file"}}
    return {"@type": "cr:RecordSet", "@id": "categories", "name": "categories", "field": [
        {"@type": "cr:Field", "@id": f"categories/{key}", "name": key, "dataType": data_type,
         "source": {**source, "extract": {"jsonPath": f"$.categories[*].{key}"}}}
        for key, data_type in (("id", "sc:Integer"), ("name", "sc:Text"))]}


def manifest_file(name: str, data: bytes) -> dict:
    return {"@type": "cr:FileObject", "@id": name, "name": name, "contentUrl": name,
            "encodingFormat": "application/gzip" if name.endswith(".gz") else "application/json",
            "sha256": hashlib.sha256(data).hexdigest()}


def image_file_set(manifest) -> dict:
    """The images: ``<class>/*.<ext>`` for each class and extension present, the files left out (bad images,
    and names the pattern would catch that are no image of the version) excluded."""
    return image_files_set("image-files", [r.path for r in manifest.records],
                           [item["path"] for item in manifest.ignored if "/" in item["path"]])


def image_files_set(file_set: str, file_names: list[str], excluded: list[str] = ()) -> dict:
    """A ``FileSet`` of ``file_names``: ``<folder>/*.<ext>`` for each folder and extension present, ``excluded``
    (files the patterns would catch that are no image of the version) left out."""
    patterns = sorted({f"{name.rpartition('/')[0]}/*.{name.rpartition('.')[2]}" if "/" in name
                       else f"*.{name.rpartition('.')[2]}" for name in file_names})
    media = sorted({MEDIA_TYPES.get(name.rpartition(".")[2].lower(), "application/octet-stream") for name in file_names})
    return {"@type": "cr:FileSet", "@id": file_set, "name": file_set,
            "encodingFormat": media[0] if len(media) == 1 else media, "includes": patterns,
            **({"excludes": sorted(excluded)} if excluded else {})}


def images_record_set(record: str = "images", file_set: str = "image-files") -> dict:
    source = {"fileSet": {"@id": file_set}}
    return {"@type": "cr:RecordSet", "@id": record, "name": record, "field": [
        {"@type": "cr:Field", "@id": f"{record}/image", "name": "image", "dataType": "sc:ImageObject",
         "source": {**source, "extract": {"fileProperty": "content"}}},
        {"@type": "cr:Field", "@id": f"{record}/label", "name": "label", "dataType": "sc:Text",
         "description": "the class folder's name",
         "source": {**source, "extract": {"fileProperty": "filepath"}, "transform": {"regex": "^(?:.*/)?([^/]+)/[^/]+$"}}},
    ]}


def files_record_set(manifest_name: str, record: str = "files",
                     description: str = "every image of the version with its sha256, from the manifest") -> dict:
    return {"@type": "cr:RecordSet", "@id": record, "name": record, "description": description,
            "field": [{"@type": "cr:Field", "@id": f"{record}/{key}", "name": key, "dataType": data_type,
                       "source": {"fileObject": {"@id": manifest_name}, "extract": {"jsonPath": f"$.images[*].{key}"}}}
                      for key, data_type in MANIFEST_FIELDS]}


def read_card(version_dir: str | Path) -> dict:
    """The fields of ``croissant.yaml`` in the version folder, or else beside it; {} when there is none.
    A field Croissant does not know here is refused, naming the file (a typo would otherwise vanish)."""
    import yaml

    if is_object_uri(version_dir):  # a streamed prefix: no card (it would be one more object to read)
        return {}
    version_dir = Path(version_dir)
    card_path = next((p for p in (version_dir / CARD_NAME, version_dir.parent / CARD_NAME) if p.is_file()), None)
    if card_path is None:
        return {}
    try:
        card = yaml.safe_load(card_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise LineageError(f"{card_path}: not valid YAML ({exc}). Fix it, or remove it to log without a card.") from None
    if not isinstance(card, dict):
        raise LineageError(f"{card_path}: expected fields such as license: and rai:dataCollection:, got {card!r}.")
    unknown = sorted(key for key in card if key not in CARD_FIELDS and not RAI_FIELD.match(str(key)))
    if unknown:
        raise LineageError(f"{card_path}: unknown field(s) {', '.join(map(str, unknown))}. A card gives "
                           f"{', '.join(CARD_FIELDS)} and Croissant RAI fields (rai:dataCollection, rai:dataBiases, ...).")
    return {key: card[key] for key in sorted(card)}


def metadata_text(metadata: dict) -> str:
    return json.dumps(metadata, indent=1, ensure_ascii=False)

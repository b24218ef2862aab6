"""Download COCO 2017 val (images + annotations) into the standard layout, checksummed and resumable.

    python coco/download_coco.py --dest coco/val2017_full
    python coco/download_coco.py --dest coco/val500 --max-images 500

``--base-url`` points at a mirror or at a folder that already holds the two zips
(``file:///data/coco_zips``); without internet the script stops and names it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from image_lineage.core.errors import DatasetError

LOGGER = logging.getLogger(__name__)

BASE_URL = "http://images.cocodataset.org"
# name -> (path under the base URL, size in bytes, md5): the published COCO 2017 files
FILES = {
    "val2017.zip": ("zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations_trainval2017.zip": ("annotations/annotations_trainval2017.zip", 252_907_541, "f4bbac642086de4f52a3fdda2de5fa2c"),
}
SPLIT = "val2017"
CHUNK = 1 << 20


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 (the checksum COCO publishes)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, size: int, md5: str) -> Path:
    """Fetch ``url`` into ``target``, resuming a ``.part`` file with an HTTP Range request."""
    if target.exists() and target.stat().st_size == size and md5_of(target) == md5:
        LOGGER.info("%s already complete", target)
        return target
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)  # noqa: S310 (http(s) or file URLs by design)
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(
            f"cannot download {url} ({exc}). Without internet, put {target.name} in a folder and pass "
            f"--base-url file:///that/folder, or give the entry points a local COCO copy (-P data_dir=...)."
        ) from exc
    with response:
        resumed = have and getattr(response, "status", None) == 206
        mode = "ab" if resumed else "wb"  # a server (or file://) that ignores Range sends it all again
        with open(partial, mode) as out, tqdm(total=size, initial=have if resumed else 0, unit="B",
                                               unit_scale=True, desc=target.name) as progress:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                progress.update(len(block))
    check_file(partial, size, md5, url)
    partial.rename(target)
    return target


def check_file(path: Path, size: int, md5: str, url: str) -> None:
    actual_size = path.stat().st_size
    actual_md5 = md5_of(path) if actual_size == size else None
    if actual_size != size or actual_md5 != md5:
        path.unlink()
        raise DatasetError(
            f"{url}: got {actual_size} bytes (md5 {actual_md5}), expected {size} bytes (md5 {md5}). "
            f"The partial file was removed; run the download again."
        )


def extract(images_zip: Path, annotations_zip: Path, dest: Path, max_images: int | None) -> Path:
    """Unpack the standard layout; with ``max_images``, the first images by id and their annotations."""
    with zipfile.ZipFile(annotations_zip) as archive:
        data = json.loads(archive.read(f"annotations/instances_{SPLIT}.json"))
    images = sorted(data["images"], key=lambda image: image["id"])[: max_images or None]
    kept = {image["id"] for image in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    annotation_file = dest / "annotations" / f"instances_{SPLIT}.json"
    annotation_file.parent.mkdir(parents=True, exist_ok=True)
    annotation_file.write_text(json.dumps(data))
    (dest / SPLIT).mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(images_zip) as archive:
        for image in tqdm(images, desc=f"unpacking {SPLIT}", unit="img"):
            with archive.open(f"{SPLIT}/{image['file_name']}") as source, open(dest / SPLIT / image["file_name"], "wb") as out:
                shutil.copyfileobj(source, out)
    return annotation_file


def fetch_coco(dest: str | Path, base_url: str = BASE_URL, max_images: int | None = None,
               downloads: str | Path | None = None, files: dict = FILES) -> Path:
    """Download (or reuse) the zips into ``downloads`` and unpack them into ``dest``."""
    dest = Path(dest)
    downloads = Path(downloads) if downloads else dest / "_downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    fetched = {
        name: download(f"{base_url.rstrip('/')}/{path}", downloads / name, size, md5)
        for name, (path, size, md5) in files.items()
    }
    return extract(fetched["val2017.zip"], fetched["annotations_trainval2017.zip"], dest, max_images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Download COCO 2017 val into <dest>/annotations + <dest>/val2017.")
    parser.add_argument("--dest", default="coco/val2017_full", help="target folder (standard COCO layout)")
    parser.add_argument("--max-images", type=int, default=None, help="keep only the first N images by id")
    parser.add_argument("--base-url", default=BASE_URL, help="mirror, or file:///folder holding the two zips")
    parser.add_argument("--downloads", default=None, help="where the zips are kept (default <dest>/_downloads)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = fetch_coco(args.dest, args.base_url, args.max_images, args.downloads)
    except DatasetError as exc:
        LOGGER.error("%s", exc)
        raise SystemExit(2) from exc
    print(f"COCO {SPLIT} ready: {path}")

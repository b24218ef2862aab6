"""The COCO download code, run against a local Range-capable HTTP server on loopback (no internet)."""

import hashlib
import http.server
import json
import threading
import zipfile

import pytest

from image_lineage.core.errors import DatasetError
from image_lineage.data.coco.index import index_split
from image_lineage.data.coco.layout import find_coco_splits
from tools import coco_download


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files and honours ``Range: bytes=N-`` (the standard library's handler ignores it)."""

    def do_GET(self):
        path = self.translate_path(self.path)
        data = open(path, "rb").read()
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def coco_mirror(tmp_path, bundled_coco):
    """The two COCO zips, built from the bundled sample, served on a free loopback port."""
    root = tmp_path / "mirror"
    (root / "zips").mkdir(parents=True)
    (root / "annotations").mkdir()
    with zipfile.ZipFile(root / "zips/val2017.zip", "w") as archive:
        for image in sorted((bundled_coco / "val2017").iterdir()):
            archive.write(image, f"val2017/{image.name}")
    with zipfile.ZipFile(root / "annotations/annotations_trainval2017.zip", "w") as archive:
        archive.write(bundled_coco / "annotations/instances_val2017.json", "annotations/instances_val2017.json")
    files = {
        name: (path, (root / path).stat().st_size, hashlib.md5((root / path).read_bytes()).hexdigest())
        for name, (path, _, _) in coco_download.FILES.items()
    }
    handler = lambda *a, **k: RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files, root
    server.shutdown()


def test_download_checks_and_unpacks_a_subset(coco_mirror, tmp_path):
    url, files, _ = coco_mirror
    annotation_file = coco_download.fetch_coco(tmp_path / "out", url, max_images=2, files=files)
    data = json.loads(annotation_file.read_text())
    assert [image["id"] for image in data["images"]] == [500, 501]
    assert {a["image_id"] for a in data["annotations"]} <= {500, 501}
    splits = find_coco_splits(tmp_path / "out")
    assert len(index_split(splits["validation"]).images) == 2


def test_download_resumes_a_partial_file(coco_mirror, tmp_path):
    url, files, root = coco_mirror
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    whole = (root / "zips/val2017.zip").read_bytes()
    (downloads / "val2017.zip.part").write_bytes(whole[: len(whole) // 2])
    coco_download.fetch_coco(tmp_path / "out", url, downloads=downloads, files=files)
    assert (downloads / "val2017.zip").read_bytes() == whole


def test_checksum_mismatch_removes_the_file(coco_mirror, tmp_path):
    url, files, _ = coco_mirror
    path, size, _ = files["val2017.zip"]
    files = {**files, "val2017.zip": (path, size, "0" * 32)}
    with pytest.raises(DatasetError, match=r"expected \d+ bytes \(md5 0000"):
        coco_download.fetch_coco(tmp_path / "out", url, files=files, downloads=tmp_path / "d")
    assert not (tmp_path / "d/val2017.zip.part").exists()


def test_unreachable_server_names_the_local_alternative(tmp_path):
    with pytest.raises(DatasetError, match="--base-url file:///that/folder"):
        coco_download.fetch_coco(tmp_path / "out", "http://127.0.0.1:9", downloads=tmp_path / "d")

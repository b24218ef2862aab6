"""The leakage check on real photos: accuracy, the check_dataset run, the on_leakage gate, the cache, bad input."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from helpers import artifact_paths
from PIL import Image

from bench.common import MOVED_TRANSFORMS, TURN_TRANSFORMS, build_leaky_splits, same_picture
from entrypoints import check_dataset as check_cli
from image_lineage.core.errors import LeakageError
from image_lineage.data.kinds.base import LoadOptions
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.ingest import read_source
from image_lineage.data.keypoints import DESCRIPTOR_BYTES
from image_lineage.quality import matching
from image_lineage.quality import pairs as pair_search
from image_lineage.quality.pairs import find_pairs
from image_lineage.quality.pairs import near_pairs, pairs_within


@pytest.fixture
def leaky(tmp_path, catsdogs_dir, coco_tiny_dir):
    root = tmp_path / "leaky"
    return root, build_leaky_splits(root)


def test_planted_copies_are_found_and_distinct_photos_are_not(leaky):
    root, planted = leaky
    images = read_source(str(root), options=LoadOptions(perceptual=True)).images
    report = find_pairs(images)
    flagged = {frozenset(pair) for pair in zip(report.pairs["path_a"], report.pairs["path_b"])}
    found = [frozenset(pair[:2]) in flagged for pair in planted]
    assert sum(found) / len(planted) >= 0.95, [p for p, f in zip(planted, found) if not f]
    # precision 1.0: every flagged pair is one picture (the planted copies, or real photos a person checked)
    assert all(same_picture(a, b) for a, b in zip(report.pairs["path_a"], report.pairs["path_b"])), report.pairs
    relabelled = report.pairs[report.pairs["path_b"].str.contains("relabelled_copy")]
    assert relabelled["label_conflict"].all() and relabelled["leakage"].all() and len(relabelled) == 8
    assert report.status == "leakage" and report.metrics["quality/label_conflicts"] == 8
    assert report.set_aside == []  # every real photo has enough in it for a perceptual hash


def test_flipped_and_turned_copies_are_found_and_named(tmp_path, catsdogs_dir, coco_tiny_dir):
    """Mirrored copies and quarter turns (0 % found before: 28-30 bits from their source) are found, with
    the move named in pairs.csv, and no two distinct real photos are paired."""
    root = tmp_path / "turned"
    planted = build_leaky_splits(root, copies_per_transform=10, transforms=tuple(TURN_TRANSFORMS))
    report = find_pairs(read_source(str(root), options=LoadOptions(perceptual=True)).images)
    flagged = {(row.path_a, row.path_b): row.transform for row in report.pairs.itertuples()}
    assert {(a, b): TURN_TRANSFORMS[t][0] for a, b, t in planted}.items() <= flagged.items(), report.pairs
    assert all(same_picture(a, b) for a, b in flagged), report.pairs


@pytest.mark.parametrize("key_bits", [None, 32])
def test_cut_pasted_tiled_and_slightly_turned_copies_are_found_and_named(key_bits, tmp_path, catsdogs_dir,
                                                                         coco_tiny_dir, monkeypatch):
    """Copies whose frame moved (0-85 % found before): turned by 4-10 degrees, 10-25 % cut from one side, a
    corner kept with 75-90 % of the area, pasted as half to 4/5 of a larger canvas, one tile of a 2x2 mosaic of
    real photos. Each is found with its move named, and every other flagged pair is truly one picture (a
    mosaic's other tiles, the known grey copies). Also with the corner vote's longest keys (32 bits, what a
    collection of over 500,000 images gets): a longer key is less likely to be shared by two views of a corner."""
    if key_bits:
        monkeypatch.setattr(matching, "key_bits", lambda descriptors: key_bits)
    root = tmp_path / "moved"
    planted = build_leaky_splits(root, copies_per_transform=12, transforms=tuple(MOVED_TRANSFORMS), seed=3)
    report = find_pairs(read_source(str(root), options=LoadOptions(perceptual=True)).images)
    flagged = {(row.path_a, row.path_b): row.transform for row in report.pairs.itertuples()}
    for a, b, transform in planted:
        assert flagged.get((a, b), "").startswith(MOVED_TRANSFORMS[transform]), (a, b, transform, flagged.get((a, b)))
    assert all(same_picture(a, b) for a, b in flagged), report.pairs


def test_hash_pairs_far_apart_are_kept_only_when_their_corners_agree(catsdogs_dir, caplog):
    """A pair the hashes alone link 5-8 bits apart is a chance meeting of two pictures' hashes unless their corners
    agree: two distinct real photos given hashes 6 bits apart are left out (4 bits apart: kept, as the hashes
    say), while copies that far from their source are kept: a real photo halved and brightened (its corners agree
    on no named move), the grey copy of a dog in the real photos (its corners name it), and a thumbnail too small
    for its corners to compare."""
    import io

    from PIL import ImageEnhance

    from image_lineage.data.read import image_facts
    from image_lineage.data.kinds.base import SplitImage

    def facts_of(data: bytes):
        return image_facts(data, perceptual=True)

    def encoded(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        return out.getvalue()

    def pairs_found(facts) -> list:
        images = [SplitImage(f"{split}/{i}.jpg", "", split, "cat") for i, split in enumerate(("train", "val"))]
        with caplog.at_level("INFO", logger="image_lineage.quality.pairs"):
            report = pair_search.pairs_among(images, facts)
        return list(zip(report.pairs["distance"], report.pairs["transform"]))

    def pair_distances(facts) -> list:
        return [distance for distance, _ in pairs_found(facts)]

    cats = sorted((catsdogs_dir / "cat").glob("*.jpg"))
    first, other = facts_of(cats[0].read_bytes()), facts_of(cats[1].read_bytes())
    for bits, kept in ((6, False), (4, True)):  # other's picture, its hashes set to first's with bits flipped
        mask = (1 << bits) - 1
        chance = other._replace(phash=tuple(value ^ mask for value in first.phash))
        assert pair_distances([first, chance]) == ([bits] if kept else []), bits
    assert "left out: their corners do not agree" in caplog.text
    small = facts_of(encoded(Image.open(cats[1]).convert("RGB").resize((60, 60))))  # beyond the corners' reach
    assert pair_distances([first, small._replace(phash=tuple(value ^ 63 for value in first.phash))]) == [6]

    copies = 0  # a real photo halved and brightened, 5-8 bits from its source: kept
    for path in cats[:40]:
        with Image.open(path) as photo:
            halved = ImageEnhance.Brightness(photo.convert("RGB").resize((photo.width // 2, photo.height // 2))).enhance(1.2)
        source, copy = facts_of(path.read_bytes()), facts_of(encoded(halved))
        distance = bin(source.phash[0] ^ copy.phash[0]).count("1")
        if pair_search.DEFAULT_THRESHOLD // 2 < distance <= pair_search.DEFAULT_THRESHOLD:
            copies += 1
            assert pairs_found([source, copy]) == [(distance, "")], path  # kept by its agreeing corners alone
    assert copies >= 1
    grey_dog = [facts_of((catsdogs_dir / "dog" / name).read_bytes()) for name in ("dog2458.jpg", "dog2469.jpg")]
    assert pairs_found(grey_dog) == [(6, "cropped")]


def test_moves_are_named_from_the_first_picture_to_the_second():
    """``describe`` reads a fitted move as people say it, and ``inverse`` says it the other way round."""
    from image_lineage.quality.matching import describe, inverse

    def move(degrees=0.0, scale=1.0, shift=(0.0, 0.0)):
        turn = np.radians(degrees)
        return np.array([[scale * np.cos(turn), -scale * np.sin(turn), shift[0]],
                         [scale * np.sin(turn), scale * np.cos(turn), shift[1]], [0, 0, 1]])

    landscape = (1.0, 0.75)
    assert describe(move(), landscape, landscape) == ""
    # b is a's right 80 %: a's point x lands at (x - 0.2) / 0.8 of b's long side (b is 0.8 wide by 0.75 high)
    assert describe(move(scale=1 / 0.8, shift=(-0.25, 0)), landscape, (1.0, 0.75 / 0.8)) == "cropped"
    assert describe(move(scale=0.7, shift=(0.1, 0.1)), landscape, landscape) == "contained"
    assert describe(move(degrees=7), landscape, landscape) == "rotated 7"
    assert inverse("rotated 7 and cropped") == "rotated -7 and contained"
    assert inverse("") == "" and inverse(inverse("contained")) == "contained"
    assert inverse("rotated 90") == "rotated 270" and inverse("flipped and rotated 90") == "flipped and rotated 90"


def test_low_information_images_are_compared_by_bytes_only(tmp_path):
    """Two 1x1 pictures of other colours and 400 distinct MNIST digits are no near-duplicates (they were
    417 pairs); an exact copy of a digit across splits is still leakage, and the report lists what was set aside."""
    from image_lineage.quality.report import report_html
    from image_lineage.training.digits.mnist import read_idx
    from conftest import shared_dir

    digits = read_idx(shared_dir("mnist") / "raw/t10k-images-idx3-ubyte")[:400]
    for index, digit in enumerate(digits):
        split = "train" if index % 2 else "val"
        Image.fromarray(digit).save(tmp_path / f"{split}_{index:03d}.png")
    for split, colour in (("train", (255, 0, 0)), ("val", (0, 0, 255))):
        Image.new("RGB", (1, 1), colour).save(tmp_path / f"{split}_dot.png")
    root = tmp_path / "splits"
    for file in sorted(tmp_path.glob("*.png")):
        split, _, name = file.name.partition("_")
        (root / split / "digit").mkdir(parents=True, exist_ok=True)
        file.rename(root / split / "digit" / name)
    report = find_pairs(read_source(str(root), options=LoadOptions(perceptual=True)).images)
    assert report.status == "clean" and len(report.set_aside) == 402, report.pairs
    shutil.copyfile(root / "train/digit/001.png", root / "val/digit/copy_of_001.png")
    images = read_source(str(root), options=LoadOptions(perceptual=True)).images
    report = find_pairs(images)
    assert report.pairs[["kind", "leakage"]].values.tolist() == [["exact_duplicate", True]]
    assert report.metrics["quality/set_aside_images"] == 403
    page = report_html(report, {image.path: image.file for image in images})
    assert "Set aside: 403 image(s)" in page and "train/digit/001.png" in page and "and 303 more" in page


def test_check_dataset_run_holds_metrics_tag_csv_and_report(leaky, experiment_name, sqlite_uri):
    root, planted = leaky
    assert check_cli.main(["--source", str(root), "--experiment-name", experiment_name]) == 0
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FINISHED" and run.info.run_name.startswith("check_") and run.info.run_name.endswith("_leaky")
    assert run.data.tags["quality.status"] == "leakage"
    metrics = run.data.metrics
    assert metrics["quality/leakage_pairs"] >= 0.95 * len(planted) and metrics["quality/label_conflicts"] == 8
    assert metrics["quality/exact_duplicate_pairs"] == 16  # 8 exact copies + 8 relabelled copies
    assert {"quality/pairs.csv", "quality/report.html"} <= set(artifact_paths(run.info.run_id))
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/quality/report.html")
    assert page.count("data:image/jpeg;base64,") >= 2 * 60 and "LEAKAGE" in page and "LABEL CONFLICT" in page


def test_on_leakage_fail_leaves_a_failed_run_with_its_report(leaky, experiment_name, sqlite_uri, caplog):
    root, _ = leaky
    assert check_cli.main(["--source", str(root), "--on-leakage", "fail", "--experiment-name", experiment_name]) == 2
    assert "leak between splits" in caplog.text and "quality/report.html" in caplog.text
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FAILED" and "quality/report.html" in artifact_paths(run.info.run_id)


def test_a_recheck_of_an_unchanged_folder_reads_and_decodes_nothing(leaky, monkeypatch, tmp_path):
    root, _ = leaky
    read_source(str(root), options=LoadOptions(perceptual=True)).images
    log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(log))
    images = read_source(str(root), options=LoadOptions(perceptual=True)).images
    find_pairs(images)
    assert not log.exists()


def leaky_coco(bundled_coco: Path, tmp_path: Path) -> Path:
    """The bundled COCO sample with one training picture copied into the validation split."""
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    shutil.copyfile(root / "train2017/000000000100.jpg", root / "val2017/000000000999.jpg")
    path = root / "annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    train = json.loads((root / "annotations/instances_train2017.json").read_text())
    image = dict(next(i for i in train["images"] if i["id"] == 100), id=999, file_name="000000000999.jpg")
    data["images"].append(image)
    next_id = max(a["id"] for a in data["annotations"]) + 1
    for offset, a in enumerate(a for a in train["annotations"] if a["image_id"] == 100):
        data["annotations"].append(dict(a, id=next_id + offset, image_id=999))
    path.write_text(json.dumps(data))
    return root


def test_on_leakage_fail_stops_coco_finetune_before_training(bundled_coco, tmp_path, experiment_name, sqlite_uri):
    root = leaky_coco(bundled_coco, tmp_path)
    request = FinetuneRequest(data_dir=str(root), experiment_name=experiment_name, weights=None, epochs=1,
                              model="fasterrcnn_mobilenet_v3_large_320_fpn", image_size=128, on_leakage="fail",
                              register_as=f"det_{experiment_name}")
    with pytest.raises(LeakageError, match=r"train2017/000000000100\.jpg \(train\) ~ val2017/000000000999\.jpg"):
        run_finetune(request)
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    paths = artifact_paths(run.info.run_id)
    assert run.info.status == "FAILED" and run.data.tags["quality.status"] == "leakage"
    assert "quality/report.html" in paths and not [p for p in paths if p.startswith(("checkpoints", "coco/"))]
    assert "epoch_loss" not in run.data.metrics  # stopped before training


def test_coco_copy_with_other_boxes_is_a_label_conflict(bundled_coco, tmp_path):
    root = leaky_coco(bundled_coco, tmp_path)
    path = root / "annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        if a["image_id"] == 999:
            a["bbox"] = [a["bbox"][0] + 7, *a["bbox"][1:]]
    path.write_text(json.dumps(data))
    report = find_pairs(read_source(str(root), options=LoadOptions(perceptual=True)).images)
    (row,) = report.pairs.itertuples()
    assert row.kind == "exact_duplicate" and row.leakage and row.label_conflict


@pytest.mark.parametrize("widths", [None, *pair_search.CHUNKINGS])
def test_pair_search_matches_brute_force(widths, monkeypatch):
    """Every pair within the threshold, whichever way the hashes are split into chunks (the search picks one by
    its cost model: None); among the planted pairs, some at exactly the threshold with their flips spread over the
    chunks so that as few chunks as possible are within the search's radius (a radius one too small misses them)."""
    chunkings = [widths] if widths else list(pair_search.CHUNKINGS)
    if widths:
        monkeypatch.setattr(pair_search, "chunk_widths", lambda queries, references, threshold: widths)
    rng = np.random.default_rng(0)
    for threshold in (0, 8, 10, 12):
        hashes = rng.integers(0, 2**63, size=3000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000).astype(np.uint64)
        for i in range(0, 200, 2):  # neighbours 0..threshold + 2 bits away, at random places
            flips = rng.choice(64, size=i % (threshold + 3), replace=False)
            hashes[i + 1] = hashes[i] ^ np.uint64(sum(1 << int(f) for f in flips))
        planted = 200
        for chunks in chunkings:  # at exactly the threshold: one chunk with threshold // m flips, the rest more
            bounds = np.cumsum([0, *chunks])
            for lowest in range(len(chunks)):
                share = [threshold // len(chunks)] + [0] * (len(chunks) - 1)
                for extra in range(threshold - share[0]):
                    share[1 + extra % (len(chunks) - 1)] += 1
                order = [lowest, *[c for c in range(len(chunks)) if c != lowest]]
                bits = [int(b) for chunk, count in zip(order, share)
                        for b in rng.choice(np.arange(bounds[chunk], bounds[chunk + 1]), size=count, replace=False)]
                hashes[planted + 1] = hashes[planted] ^ np.uint64(sum(1 << b for b in bits))
                planted += 2
        distances = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
        a, b, d = pairs_within(hashes, hashes, threshold, same=True)
        found = {(int(x), int(y)): int(z) for x, y, z in zip(a, b, d)}
        expected = {(int(x), int(y)): int(distances[x, y]) for x, y in zip(*np.nonzero(np.triu(distances <= threshold, 1)))}
        assert found == expected and len(expected) >= 30, threshold
        others = hashes[::3] ^ np.uint64(1 << 40)  # another set of queries, one bit from every third hash
        a, b, d = pairs_within(others, hashes, threshold, same=False)
        cross = np.bitwise_count(others[:, None] ^ hashes[None, :])
        assert {(int(x), int(y)): int(z) for x, y, z in zip(a, b, d)} == {
            (int(x), int(y)): int(cross[x, y]) for x, y in zip(*np.nonzero(cross <= threshold))}, threshold
        if threshold == 8:
            triples = np.stack([hashes, hashes, hashes], axis=1)
            assert near_pairs(triples, threshold) == {key: (distance, "") for key, distance in expected.items()}


def test_a_quarter_or_a_turn_links_two_pictures_only_within_half_the_threshold():
    """Quarters and turns compare each picture several ways, so they must come closer than a whole picture does:
    within threshold // 2 (the tiles and turns of real photos measured 0-2 bits); a whole picture within the
    threshold, as before."""
    from image_lineage.data.perceptual import HASHES, TILE_COLUMNS, TURN_COLUMNS, TURN_FREE

    rng = np.random.default_rng(7)

    def flipped_bits(value: int, count: int) -> np.uint64:
        return np.uint64(value ^ sum(1 << int(bit) for bit in rng.choice(64, size=count, replace=False)))

    for bits, kept in ((4, True), (5, False), (6, False)):  # 4 is threshold // 2; one bit past it is out
        hashes = rng.integers(0, 2**63, size=(8, HASHES), dtype=np.int64).astype(np.uint64)
        hashes[1, 0] = flipped_bits(int(hashes[0, TILE_COLUMNS.start + 2]), bits)  # 1 is a tile of 0
        hashes[3, TURN_FREE] = hashes[2, TURN_FREE]  # 3 is 2 turned (the turn-free hashes agree)
        hashes[3, 0] = flipped_bits(int(hashes[2, TURN_COLUMNS.start]), bits)
        hashes[5, 0] = flipped_bits(int(hashes[4, 0]), bits + 2)  # 5 is 4 re-encoded: within 8 either way
        hashes[7, TURN_FREE] = flipped_bits(int(hashes[6, TURN_FREE]), bits)  # 7 is 6 turned, as far on the
        hashes[7, 0] = hashes[6, TURN_COLUMNS.start + 1]  # turn-free hash (its candidates are within 4 too)
        found = near_pairs(hashes, 8)
        assert found[(4, 5)] == (bits + 2, "") and ((6, 7) in found) == kept
        assert ((0, 1) in found, (2, 3) in found) == (kept, kept), bits
        if kept:
            assert found[(0, 1)] == (bits, "cropped") and found[(2, 3)] == (bits, "flipped")


def test_corner_vote_groups_keys_as_a_plain_lookup_does_and_lengthens_them_with_the_collection():
    """``key_buckets`` (keys and their descriptors packed in one sorted uint64 array) gives what grouping the
    descriptors by their key bytes in Python gives; keys grow from 24 bits with the number of corners, so that
    chance meetings of unrelated corners stay rare at any size."""
    rng = np.random.default_rng(1)
    descriptors = rng.integers(0, 256, size=(5000, DESCRIPTOR_BYTES), dtype=np.uint8)
    descriptors[4000:] = descriptors[rng.integers(0, 4000, 1000)] ^ (rng.random((1000, 32)) < 0.02).astype(np.uint8)
    positions = np.arange(len(descriptors), dtype=np.uint32)
    buffer = np.full(len(descriptors), 2**64 - 1, dtype=np.uint64)  # one sort buffer for every table, as the vote does
    for table, bits in ((0, 24), (9, 24), (4, 30), (9, 32), (3, 12)):
        groups = {}
        for index, row in enumerate(descriptors):
            groups.setdefault(int.from_bytes(row[3 * table : 3 * table + 4].tobytes(), "little") % (1 << bits), []).append(index)
        expected = sorted((key << (32 - bits), index) for key, members in groups.items() if len(members) > 1 for index in members)
        for packed in (None, buffer):
            keys, indexes, starts, sizes = matching.key_buckets(descriptors, table, bits, positions, packed)
            buckets = [[(int(keys[p]), int(indexes[p])) for p in range(start, start + size)]
                       for start, size in zip(starts, sizes)]
            assert all(len({key for key, _ in bucket}) == 1 for bucket in buckets)  # one key a bucket
            assert [member for bucket in buckets for member in bucket] == expected and len(expected) > 100, (table, bits)
            assert len(buckets) == sum(len(members) > 1 for members in groups.values())  # each key's members in one
    for batch in (matching.PAIRS_A_BATCH, 50, 1):  # every two members of each bucket, once, however batched
        pairs = [pair for a, b in matching.bucket_pairs(np.array([0, 7, 30]), np.array([2, 16, 3]), batch)
                 for pair in zip(a.tolist(), b.tolist())]
        assert sorted(pairs) == [(s + i, s + j) for s, n in ((0, 2), (7, 16), (30, 3)) for i in range(n) for j in range(i + 1, n)]
    assert list(matching.bucket_pairs(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))) == []
    # every corner in more than BUCKET_CAP images: no bucket votes, no candidate (not an error)
    poses = np.zeros((len(descriptors[:50]), 2), dtype=np.uint8)
    assert matching.candidate_pairs([(descriptors[:50], poses)] * (matching.BUCKET_CAP + 1)) == []
    assert [matching.key_bits(images * 256) for images in (1, 2000, 2048, 2049, 100_000, 10**7)] == [24, 24, 24, 25, 30, 32]
    for unviewable in (np.asfortranarray(descriptors), descriptors[:, :16].copy(), descriptors.astype(np.int16)):
        with pytest.raises(ValueError, match="C-contiguous"):  # its keys would be read from the wrong bytes
            matching.key_buckets(unviewable, 0, 24, positions)


@pytest.mark.parametrize("case", ["one image", "empty split", "modes", "huge jpeg"])
def test_odd_images_and_folders_work_or_fail_clearly(case, tmp_path, catsdogs_dir, experiment_name, sqlite_uri, caplog):
    photo = sorted((catsdogs_dir / "cat").glob("*.jpg"))[0]
    root = tmp_path / "data"
    (root / "train/cat").mkdir(parents=True)
    if case == "one image":
        shutil.copyfile(photo, root / "train/cat/a.jpg")
    elif case == "empty split":
        shutil.copyfile(photo, root / "train/cat/a.jpg")
        (root / "val/cat").mkdir(parents=True)
    elif case == "modes":
        with Image.open(photo) as image:
            image.convert("L").save(root / "train/cat/grey.png")
            image.convert("CMYK").save(root / "train/cat/cmyk.jpg")
            image.convert("RGBA").save(root / "train/cat/rgba.png")
            Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257)).save(root / "train/cat/deep.png")
    else:
        Image.new("L", (12000, 12000), 128).save(root / "train/cat/huge.jpg", quality=50)
    code = check_cli.main(["--source", str(root), "--experiment-name", experiment_name])
    if case == "empty split":
        assert code == 2 and "no readable images" in caplog.text and "val" in caplog.text
    else:
        assert code == 0, caplog.text
        (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
        assert run.data.tags["quality.status"] == ("duplicates" if case == "modes" else "clean")

"""The Arrow digest is a function of the features and the rows' values in order, not of memory layout.

Property checks: random re-chunkings, slices, concatenations, ``select``, ``flatten_indices`` and
save/load give the same digest; a random single-cell change, a row swap, an added or removed row, or a
changed feature type give another one. The table holds an image column (embedded bytes), a nested list
column, nulls and strings, and spans several digest batches.
"""

import io
import random

import datasets
import pyarrow as pa
import pytest
from datasets.table import InMemoryTable
from PIL import Image

from image_lineage.data.arrow_digest import ARROW_BATCH_ROWS, compute_arrow_digest

ROWS = ARROW_BATCH_ROWS * 2 + 317  # three digest batches, the last one partial
FEATURES = datasets.Features({
    "image": datasets.Image(),
    "caption": datasets.Value("string"),
    "tags": datasets.List(datasets.Value("string")),
    "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
    "score": datasets.Value("float64"),
    "label": datasets.ClassLabel(names=["cat", "dog", "bird"]),
})


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (seed % 256, seed // 256 % 256, 7)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def rows() -> dict:
    rng = random.Random(0)
    return {
        "image": [{"bytes": png(i), "path": f"{i}.png"} if i % 97 else None for i in range(ROWS)],
        "caption": [None if i % 13 == 0 else f"photo {i} " + "x" * rng.randrange(5) for i in range(ROWS)],
        "tags": [None if i % 17 == 0 else [f"t{rng.randrange(9)}" for _ in range(rng.randrange(4))] for i in range(ROWS)],
        "boxes": [[[float(i), 1.0, 2.0, 3.5]] * rng.randrange(3) for i in range(ROWS)],
        "score": [None if i % 11 == 0 else rng.random() for i in range(ROWS)],
        "label": [rng.randrange(3) for _ in range(ROWS)],
    }


@pytest.fixture(scope="module")
def dataset(rows):
    return datasets.Dataset.from_dict(rows, features=FEATURES)


@pytest.fixture(scope="module")
def digest(dataset) -> str:
    return compute_arrow_digest(dataset)


def rechunked(dataset, rng: random.Random):
    """The same rows as a table cut into random chunks (each a zero-copy slice with its own offset)."""
    table = dataset.data.table
    cuts = sorted(rng.sample(range(1, len(table)), rng.randrange(1, 40)))
    pieces = [table.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, len(table)])]
    return datasets.Dataset(InMemoryTable(pa.concat_tables(pieces)), info=dataset.info.copy())


@pytest.mark.parametrize("seed", range(6))
def test_layouts_of_the_same_rows_give_the_same_digest(dataset, digest, seed):
    rng = random.Random(seed)
    cut = rng.randrange(1, len(dataset))
    same = [
        rechunked(dataset, rng),
        datasets.concatenate_datasets([dataset.select(range(cut)), dataset.select(range(cut, len(dataset)))]),
        datasets.concatenate_datasets([rechunked(dataset, rng).select(range(cut)),
                                       dataset.select(range(cut, len(dataset))).flatten_indices()]),
        dataset.select(range(len(dataset))).flatten_indices(),
    ]
    for other in same:
        assert compute_arrow_digest(other) == digest


def test_save_and_load_keep_the_digest(dataset, digest, tmp_path):
    dataset.save_to_disk(str(tmp_path / "saved"), max_shard_size="100KB")
    assert compute_arrow_digest(datasets.load_from_disk(str(tmp_path / "saved"))) == digest


def test_the_same_csv_read_in_other_chunk_sizes_keeps_the_digest(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,name,value\n" + "".join(f"{i},name {i},{i * 0.5}\n" for i in range(7000)))
    whole = datasets.load_dataset("csv", data_files=str(path), split="train")
    chunked = datasets.load_dataset("csv", data_files=str(path), split="train", chunksize=3000)
    assert compute_arrow_digest(whole) == compute_arrow_digest(chunked)


def mutate_one_cell(rows: dict, rng: random.Random) -> tuple[dict, str]:
    """A copy of ``rows`` with one random cell changed to a different value."""
    column = rng.choice(sorted(rows))
    row = rng.randrange(ROWS)
    changed = {name: list(values) for name, values in rows.items()}
    old = changed[column][row]
    if column == "image":
        new = {"bytes": png(ROWS + row), "path": f"{row}.png"} if old else {"bytes": png(row), "path": "x.png"}
    elif column == "caption":
        new = (old or "") + "!"
    elif column == "tags":
        new = (old or []) + ["new"]
    elif column == "boxes":
        new = (old or []) + [[0.0, 0.0, 1.0, 1.0]]
    elif column == "score":
        new = 2.0 if old is None else None
    else:
        new = (old + 1) % 3
    changed[column][row] = new
    return changed, f"{column}[{row}]"


@pytest.mark.parametrize("seed", range(8))
def test_any_single_cell_change_changes_the_digest(rows, digest, seed):
    changed, where = mutate_one_cell(rows, random.Random(seed))
    assert compute_arrow_digest(datasets.Dataset.from_dict(changed, features=FEATURES)) != digest, where


def test_image_bytes_row_order_row_count_and_feature_types_count(dataset, rows, digest):
    flipped = {name: list(values) for name, values in rows.items()}
    cell = flipped["image"][5]
    flipped["image"][5] = {"bytes": cell["bytes"][:-1] + bytes([cell["bytes"][-1] ^ 1]), "path": cell["path"]}
    assert compute_arrow_digest(datasets.Dataset.from_dict(flipped, features=FEATURES)) != digest
    order = list(range(len(dataset)))
    order[10], order[11] = order[11], order[10]
    assert compute_arrow_digest(dataset.select(order)) != digest
    assert compute_arrow_digest(dataset.select(range(len(dataset) - 1))) != digest
    assert compute_arrow_digest(datasets.concatenate_datasets([dataset, dataset.select([0])])) != digest
    assert compute_arrow_digest(dataset.cast_column("score", datasets.Value("float32"))) != digest


def test_a_picture_embedded_or_named_by_path_has_one_identity(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png(i))
    features = datasets.Features({"image": datasets.Image()})
    by_path = datasets.Dataset.from_dict({"image": [str(p) for p in paths]}, features=features)
    embedded = datasets.Dataset.from_dict({"image": [{"bytes": p.read_bytes(), "path": None} for p in paths]}, features=features)
    assert compute_arrow_digest(by_path) == compute_arrow_digest(embedded)

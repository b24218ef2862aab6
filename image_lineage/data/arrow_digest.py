"""Content digest of a ``datasets.Dataset``: a function of its features and of its rows' values, in order.

Arrow keeps the same rows in many memory layouts: split into chunks anywhere, sliced with an offset, with
or without a validity bitmap, with any bytes under a null slot, behind an indices mapping after
``select``. Hashing Arrow's IPC stream would hash that layout too (the same CSV read in other chunk sizes
gave another digest). Here every batch of a fixed number of rows, counted from the first row, is
reduced to a canonical form before it is hashed:

* every array: its length, then its validity (packed bits) when it has nulls;
* fixed-width values: the value bytes, nulls zeroed; booleans: packed bits;
* strings and binaries: the value lengths, then the value bytes;
* lists: the list lengths, then the flattened values; structs: each field in turn;
* images (``datasets.Image`` columns): each cell's content sha256, whether its bytes are embedded or it
  names a file (read through the image pass, so cached and checked): where a picture lives is no part of
  its identity, so embedding the files of an image folder keeps the digest.

Batches stream (``ARROW_BATCH_ROWS`` at a time): the whole table is never in memory.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from image_lineage.core.errors import DatasetError
from image_lineage.data.facts import ImageFacts
from image_lineage.data.read import read_images

ARROW_BATCH_ROWS = 1000
NO_IMAGE = b"\0" * 32


def compute_arrow_digest(dataset, image_check: str = "structure") -> str:
    """sha256 of ``dataset``'s features and rows (see the module docstring), streamed in batches."""
    import datasets

    features = dataset.features
    image_columns = {name for name, feature in features.items() if isinstance(feature, datasets.Image)}
    digest = hashlib.sha256(json.dumps(features.to_dict(), sort_keys=True).encode())
    for table in dataset.with_format("arrow").iter(batch_size=ARROW_BATCH_ROWS):
        for name in features:
            column = table.column(name).combine_chunks()
            if name in image_columns:
                digest.update(image_cell_digests(column, image_check))
            else:
                update_with_array(digest, column)
    return digest.hexdigest()


def update_with_array(digest, array: pa.Array) -> None:
    """Feed ``array``'s values (not its layout) to ``digest``."""
    kind = array.type
    digest.update(len(array).to_bytes(8, "little"))
    if array.null_count:
        digest.update(b"V" + np.packbits(array.is_valid().to_numpy(zero_copy_only=False)).tobytes())
    if pa.types.is_dictionary(kind):
        update_with_array(digest, array.dictionary_decode())
    elif pa.types.is_struct(kind):
        for field_values in array.flatten():  # slice offset applied, parent nulls merged
            update_with_array(digest, field_values)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        digest.update(pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64()).to_numpy().tobytes())
        update_with_array(digest, array.flatten())  # the values of non-null lists, slice offset applied
    elif is_binary_like(kind):
        lengths, data = binary_values(array)
        digest.update(lengths.tobytes())
        digest.update(data)
    elif pa.types.is_boolean(kind):
        digest.update(np.packbits(pc.fill_null(array, False).to_numpy(zero_copy_only=False)).tobytes())
    elif pa.types.is_null(kind):
        pass
    elif hasattr(kind, "bit_width") and kind.bit_width % 8 == 0:
        if array.null_count:
            array = pc.fill_null(array, pa.array([0]).cast(kind)[0])
        width = kind.bit_width // 8
        digest.update(array.buffers()[1][array.offset * width : (array.offset + len(array)) * width])
    else:  # a rare type with no fixed layout to read: its Python values
        digest.update(repr(array.to_pylist()).encode())


def is_binary_like(kind: pa.DataType) -> bool:
    return any(check(kind) for check in (pa.types.is_binary, pa.types.is_string, pa.types.is_large_binary,
                                         pa.types.is_large_string))


def binary_values(array: pa.Array) -> tuple[np.ndarray, memoryview]:
    """(int64 value lengths, the values' bytes back to back) of a string/binary array, nulls empty."""
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(b"" if "binary" in str(array.type) else "", array.type))
    offset_type = np.int64 if pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type) else np.int32
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[array.offset : array.offset + len(array) + 1]
    data = memoryview(buffers[2] or b"")[int(offsets[0]) : int(offsets[-1])] if len(array) else memoryview(b"")
    return np.diff(offsets).astype(np.int64), data


def image_cell_digests(column: pa.Array, image_check: str) -> bytes:
    """32 bytes per image cell: the sha256 of its embedded bytes, or of the file its path names."""
    names = [column.type.field(i).name for i in range(column.type.num_fields)]
    fields = dict(zip(names, column.flatten()))  # struct nulls merged into the fields
    embedded, paths = fields["bytes"], fields["path"]
    has_bytes = embedded.is_valid().to_numpy(zero_copy_only=False)
    path_rows = np.flatnonzero(~has_bytes & paths.is_valid().to_numpy(zero_copy_only=False))
    by_row = dict(zip(path_rows.tolist(), file_sha256s(paths.take(pa.array(path_rows)).to_pylist(), image_check)))
    lengths, data = binary_values(embedded)
    starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return b"".join(
        hashlib.sha256(data[starts[i] : starts[i + 1]]).digest() if has_bytes[i] else by_row.get(i, NO_IMAGE)
        for i in range(len(column))
    )


def file_sha256s(paths: list[str], image_check: str) -> list[bytes]:
    results = read_images(paths, image_check)
    for path, result in zip(paths, results):
        if not isinstance(result, ImageFacts):
            raise DatasetError(f"bad image {path} in the dataset: {result}. Replace or remove the file.")
    return [bytes.fromhex(result.sha256) for result in results]

"""Parquet columns -> numpy arrays of the dtype and shape meta/info.json declares (reader and repair)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa


def column_to_numpy(col: pa.ChunkedArray, key: str, ft: dict, path: Path | str) -> np.ndarray:
    """A parquet column -> (N, *shape) array ((N,) for scalar columns) of the info.json dtype."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    shape = tuple(int(s) for s in ft["shape"])
    if ft["dtype"] == "string":
        return np.asarray(arr.to_pylist(), dtype=object)
    depth = 0
    while (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        if arr.null_count:
            raise ValueError(f"{path}: column {key!r} has null rows")
        arr = arr.flatten()
        depth += 1
    if arr.null_count:
        raise ValueError(f"{path}: column {key!r} has null values")
    values = arr.to_numpy(zero_copy_only=False)
    if depth == 0:
        if shape not in ((1,), ()):
            raise ValueError(
                f"{path}: column {key!r} holds scalars but meta/info.json declares shape {list(shape)}"
            )
        out = values.reshape(n)
    else:
        if values.size != n * int(np.prod(shape)):
            raise ValueError(
                f"{path}: column {key!r} holds {values.size // max(n, 1)} values per row but meta/info.json "
                f"declares shape {list(shape)}"
            )
        out = values.reshape((n, *shape))
    try:
        return np.ascontiguousarray(out.astype(np.dtype(ft["dtype"]), copy=False))
    except TypeError as e:
        raise ValueError(f"{path}: column {key!r} cannot be read as {ft['dtype']} ({e})") from e

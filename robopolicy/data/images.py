"""PNG images stored inside parquet (lerobot's ``image`` dtype: struct<bytes, path>)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def encode_png(img: np.ndarray, compress_level: int = 6) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (level 6 is what lerobot uses for image features)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_image(cell: dict | None, root: Path, where: str) -> np.ndarray:
    """One parquet image cell -> uint8 (H, W, 3). Falls back to ``path`` (relative to the dataset
    root) when the bytes are absent, as lerobot's v2 datasets allow."""
    if cell is None:
        raise ValueError(f"{where}: image cell is null")
    data = cell.get("bytes")
    if data is not None:
        source = io.BytesIO(data)
    else:
        p = cell.get("path")
        if not p:
            raise ValueError(f"{where}: image cell has neither bytes nor path")
        source = Path(p) if Path(p).is_absolute() else root / p
        if not source.is_file():
            raise FileNotFoundError(f"{where}: image file {source} not found")
    try:
        return np.asarray(Image.open(source).convert("RGB"))
    except (OSError, Image.UnidentifiedImageError) as e:
        raise ValueError(f"{where}: corrupt image ({e})") from e

"""Read-only, zero-copy views of the vectors and labels inside an hnswlib index file.

Live-recall checks need every vector for exact search. Loading them a second
time would double the index's memory; hnswlib's Python API copies on every read.
The saved file already holds them: level-0 records of `size_data_per_element`
bytes (links, then the vector, then the label) after a fixed header. Mapping it
costs page cache that the kernel can drop, not heap.

The layout is hnswlib's (HierarchicalNSW::saveIndex, 0.8.0 pinned in
constraints.txt); `map_vectors` checks it against the loaded index and refuses
a file that does not match, so a layout change fails loudly, never silently.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from .errors import ArtifactError

# offsetLevel0, max_elements, cur_element_count, size_data_per_element,
# label_offset, offsetData (size_t each), maxlevel (int), enterpoint (uint32),
# maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
_HEADER = struct.Struct("<6Q i I 3Q d Q")


@dataclass(frozen=True)
class GraphVectors:
    vectors: npt.NDArray[np.float32]  # (n, dim) strided view into the mapped file
    labels: npt.NDArray[np.uint64]  # (n,) hnswlib label of each row

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def map_vectors(path: Path, index: hnswlib.Index, dim: int) -> GraphVectors:
    with path.open("rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise ArtifactError(f"{path}: too short for an hnswlib index")
    fields = _HEADER.unpack(head)
    _, _, count, per_element, label_offset, data_offset = fields[:6]
    if (
        count != index.get_current_count()
        or label_offset - data_offset != 4 * dim
        or per_element != label_offset + 8
    ):
        raise ArtifactError(f"{path}: hnswlib layout not understood (header {fields[:6]})")
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=_HEADER.size, shape=(count, per_element))
    vectors = raw[:, data_offset:label_offset].view(np.float32)
    labels = raw[:, label_offset:per_element].view(np.uint64)[:, 0]
    out = GraphVectors(vectors, labels)
    _check_against(out, index)
    return out


def _check_against(mapped: GraphVectors, index: hnswlib.Index) -> None:
    """A few rows read through the mapping equal hnswlib's own copies."""
    n = len(mapped)
    if n == 0:
        return
    rows = sorted({0, n // 2, n - 1})
    labels = [int(mapped.labels[r]) for r in rows]
    try:
        own = np.asarray(index.get_items(labels), dtype=np.float32)
    except RuntimeError as e:  # a label hnswlib does not know: the layout is off
        raise ArtifactError(f"index file layout not understood: {e}") from None
    if not np.array_equal(own, np.asarray(mapped.vectors[rows])):
        raise ArtifactError("index file layout not understood: mapped vectors differ")

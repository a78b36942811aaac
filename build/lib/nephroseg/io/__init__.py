"""Reading and writing volumes and datasets; knows nothing of torch."""

from nephroseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from nephroseg.io.kits import (
    ClinicalRecord,
    KitsCase,
    find_cases,
    labelled_cases,
    load_case,
    read_kits_json,
    write_kits_json,
)
from nephroseg.io.volume import (
    CANONICAL_AXCODES,
    SourceGeometry,
    Volume,
    read_geometry,
    read_volume,
    spacing_of,
    volume_from_array,
    write_array,
    write_like,
)

__all__ = [
    "CANONICAL_AXCODES",
    "ClinicalRecord",
    "KitsCase",
    "SourceGeometry",
    "Volume",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "find_cases",
    "labelled_cases",
    "load_case",
    "read_geometry",
    "read_kits_json",
    "read_volume",
    "spacing_of",
    "volume_from_array",
    "write_array",
    "write_kits_json",
    "write_like",
]

"""nephroseg: kidney and kidney-tumor segmentation in abdominal CT."""

__version__ = "0.1.0"

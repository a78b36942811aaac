"""The knobs of the phantom generator, validated once so that generation never meets a bad value."""

from __future__ import annotations

from dataclasses import dataclass, fields

# Reconstruction thicknesses that scanners actually offer; KiTS19 spans 0.5–5 mm.
STANDARD_THICKNESSES_MM = (0.5, 0.625, 0.75, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.75, 4.0, 5.0)
MAX_TUMORS = 6  # each painted tumor gets its own tissue class (see intensity.Tissue)


@dataclass(frozen=True)
class SynthConfig:
    """How the synthetic cohort varies. Ranges are (low, high) and drawn uniformly per case.

    The defaults mimic KiTS19 (512² slices, 0.5–5 mm thick); ``SynthConfig.fast()`` gives small
    volumes that generate in well under a second on a CPU.
    """

    size: int = 512  # in-plane matrix (rows = columns)
    fov_mm: tuple[float, float] = (300.0, 450.0)  # reconstruction field of view; spacing = fov / size
    slice_thickness_mm: tuple[float, float] = (0.5, 5.0)
    z_extent_mm: tuple[float, float] = (120.0, 300.0)  # scanned length; the kidneys are kept inside
    min_tumors: int = 0
    max_tumors: int = 3
    cyst_probability: float = 0.3  # chance that a kidney carries simple cysts
    noise_sd_hu: tuple[float, float] = (8.0, 25.0)
    single_kidney_probability: float = 0.05  # post-nephrectomy cases

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, list):  # accept lists from YAML/JSON recipes
                object.__setattr__(self, item.name, tuple(value))
        _check_int("size", self.size, 16, 2048)
        _check_range("fov_mm", self.fov_mm, 100.0, 800.0)
        _check_range("slice_thickness_mm", self.slice_thickness_mm, 0.1, 20.0)
        _check_range("z_extent_mm", self.z_extent_mm, 10.0, 2000.0)
        _check_range("noise_sd_hu", self.noise_sd_hu, 0.0, 200.0)
        _check_int("min_tumors", self.min_tumors, 0, MAX_TUMORS)
        _check_int("max_tumors", self.max_tumors, 0, MAX_TUMORS)
        if self.min_tumors > self.max_tumors:
            raise ValueError(f"min_tumors ({self.min_tumors}) must not exceed max_tumors ({self.max_tumors})")
        _check_probability("cyst_probability", self.cyst_probability)
        _check_probability("single_kidney_probability", self.single_kidney_probability)

    @classmethod
    def fast(cls, size: int = 128, **overrides: object) -> SynthConfig:
        """Small, thick-sliced volumes for CPU demos and tests (a 128² case takes a fraction of a second)."""
        settings: dict[str, object] = {
            "size": size,
            "slice_thickness_mm": (2.5, 5.0),
            "z_extent_mm": (140.0, 200.0),
            "min_tumors": 1,
        }
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must hold two numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (low <= lo <= hi <= high):
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got ({lo}, {hi})")


def _check_probability(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")

"""What `alexnet bench` measures and how long: the model, the batch, the repeats and the sections."""

from __future__ import annotations

from dataclasses import dataclass

from alexnet.config import BENCH_SECTION_ALIASES as SECTION_ALIASES
from alexnet.config import BENCH_SECTIONS as SECTIONS  # the registry's keys, in order (alexnet.speed.sections)
from alexnet.errors import ConfigError

PHOTO_SIZE = (500, 375)  # (width, height) of a typical Kaggle cats-vs-dogs photo


@dataclass(frozen=True)
class BenchConfig:
    model: str = "alexnet-bn"  # the cats-vs-dogs note's model: the workload users bring
    image_size: int = 227
    batch_size: int = 64
    num_classes: int = 2
    width_mult: float = 1.0  # < 1 only for quick checks: the headline figures are at full width
    steps: int | None = None  # timed training steps per pass, after one warm-up step (None: planned, see plan_work)
    repeats: int = 3  # passes; every figure is the median over them
    photos: int | None = None  # JPEG files in the end-to-end epoch (None: planned, at most MAX_PHOTOS)
    lrn_model: str = "alexnet"  # the paper model, for the LRN cost
    sections: tuple[str, ...] = SECTIONS  # which to run, by the name of their results

    def __post_init__(self) -> None:
        for name in ("image_size", "batch_size", "num_classes", "steps", "repeats", "photos"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"bench {name} must be >= 1, got {getattr(self, name)}")
        sections = tuple(SECTION_ALIASES.get(s, s) for s in self.sections)
        if sections != self.sections:  # frozen: the old names replaced once, here
            object.__setattr__(self, "sections", sections)
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown bench section(s) {', '.join(sorted(unknown))}; valid: {', '.join(SECTIONS)}")

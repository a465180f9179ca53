"""The study's names for things, as values: a decoder (`DecoderId`) and a model (`ModelId`).

Each is written into metrics files and pages as one string (`str(x)`) and read back by its own
`parse` or `from_json`, which refuse anything else; no other code builds or splits these strings.
"""
import re
from dataclasses import dataclass

from study.core.settings import DECODER_KINDS

_DECODER = re.compile(r"z([1-9][0-9]{0,2})_([a-z]+)")


@dataclass(frozen=True, order=True)
class DecoderId:
    """One decoder Task 3 reads: the layer whose latent it decodes and its kind
    (settings.DECODER_KINDS: learned, literal, refit, tied). Written "z1_refit"."""

    layer: int
    kind: str

    def __post_init__(self):
        if self.kind not in DECODER_KINDS:
            raise ValueError(f"no decoder kind {self.kind!r}; one of {', '.join(DECODER_KINDS)}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 1:
            raise ValueError(f"a decoder's layer is a whole number from 1, not {self.layer!r}")

    def __str__(self) -> str:
        return f"z{self.layer}_{self.kind}"

    @property
    def label(self) -> str:
        """'z1, refitted on the real latents'."""
        return f"z{self.layer}, {DECODER_KINDS[self.kind]}"

    @property
    def tied(self) -> bool:
        return self.kind == "tied"

    @classmethod
    def parse(cls, text: str) -> "DecoderId":
        """'z1_refit' -> DecoderId(1, 'refit'); ValueError for anything else."""
        match = _DECODER.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a decoder id (z<layer>_<kind>, e.g. z1_refit)")
        return cls(int(match.group(1)), match.group(2))

    @classmethod
    def own(cls, layer: int, depth: int) -> "DecoderId":
        """Task 2's own decoder read from `layer` of a `depth`-layer net: learned at the last
        layer, literal below it (trained only on the outputs of the layer above)."""
        return cls(layer, "learned" if layer == depth else "literal")

    @classmethod
    def picture(cls, layer: int, depth: int) -> "DecoderId":
        """The decoder a layer's pictures use: the refitted one for z1 (when the net has more
        than one layer), Task 2's own otherwise."""
        return cls(1, "refit") if layer == 1 and depth > 1 else cls.own(layer, depth)


MODEL_KINDS = ("trained", "permuted", "random", "lambda")


@dataclass(frozen=True)
class ModelId:
    """A model of the study by what it is: the trained one, its permuted-labels twin, a random
    model whose convolutions `stages` were re-initialised (cascade, from seed `seed`), or a Task 2
    of the λ sweep (`lam`, `seed`). Written "trained", "permuted_labels", "conv1_conv2_seed1001",
    "lambda_0.01_seed0"; carried in files as `to_json()`."""

    kind: str
    seed: int | None = None
    stages: tuple[int, ...] = ()
    lam: float | None = None

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"no model kind {self.kind!r}; one of {', '.join(MODEL_KINDS)}")
        if (self.kind == "random") != bool(self.stages):
            raise ValueError("a random model names its re-initialised stages; no other does")
        if self.kind == "lambda" and (self.lam is None or self.seed is None):
            raise ValueError("a λ-sweep model has a λ and a seed")

    def __str__(self) -> str:
        if self.kind == "random":
            return "_".join(f"conv{k}" for k in self.stages) + (
                f"_seed{self.seed}" if self.seed is not None else "")
        if self.kind == "lambda":
            return f"lambda_{self.lam:g}_seed{self.seed}"
        return "permuted_labels" if self.kind == "permuted" else self.kind

    def to_json(self) -> dict:
        return {"kind": self.kind, "seed": self.seed, "stages": list(self.stages),
                "lambda": self.lam}

    @classmethod
    def from_json(cls, value: object) -> "ModelId":
        """The ModelId a file holds; ValueError naming what is wrong with anything else."""
        if not isinstance(value, dict) or set(value) != {"kind", "seed", "stages", "lambda"}:
            raise ValueError("a model is {kind, seed, stages, lambda}")
        seed, stages, lam = value["seed"], value["stages"], value["lambda"]
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"a model's seed is a whole number from 0 or null, not {seed!r}")
        if not isinstance(stages, list) or len(stages) > 64 or not all(
                isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64 for k in stages):
            raise ValueError("a model's stages are a list of whole numbers from 1 to 64")
        if lam is not None and (not isinstance(lam, (int, float)) or isinstance(lam, bool)
                                or not 0 <= lam < float("inf")):
            raise ValueError(f"a model's λ is a finite number from 0 or null, not {lam!r}")
        if not isinstance(value["kind"], str):
            raise ValueError("a model's kind is a word")
        return cls(value["kind"], seed, tuple(stages), None if lam is None else float(lam))

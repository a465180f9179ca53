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
        try:
            return cls(int(match.group(1)), match.group(2))
        except ValueError as error:
            raise ValueError(f"{text!r} is not a decoder id: {error}") from None

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


MODEL_KINDS = ("trained", "permuted", "random", "lambda", "rotation", "refit_seed")
_NAMED = {"trained": "trained", "permuted_labels": "permuted", "rotation": "rotation",
          "refit_seed": "refit_seed"}
_STAGE = re.compile(r"conv([1-9][0-9]?)")
_LAMBDA = re.compile(r"lambda_([0-9.e+-]+)_seed([0-9]{1,10})")
# the words for each kind: (short label, long label)
_WORDS = {"trained": ("trained", "the trained model"),
          "permuted": ("permuted labels", "the same Task 2 protocol trained on permuted labels"),
          "rotation": ("rotated", "the trained latents read along random orthonormal directions"),
          "refit_seed": ("trained, refit of another seed",
                         "the trained encoder with decoders refitted from seed + 1: the pictures' "
                         "noise floor")}


@dataclass(frozen=True)
class ModelId:
    """A model, or a group of models, of the study by what it is: the trained one, its
    permuted-labels twin, a random model whose convolutions `stages` were re-initialised over the
    trained ones below (a cascade step of Adebayo et al.; with `seed`, one draw of it), a Task 2
    of the λ sweep (`lam`, `seed`), the trained latents read along random rotations, or the
    trained encoder with decoders refitted from another seed. Written "trained",
    "permuted_labels", "conv1_conv2", "conv1_conv2_seed1001", "lambda_0.01_seed0", "rotation",
    "refit_seed"; read back by `parse`, carried in files as `to_json()`."""

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

    @classmethod
    def cascade(cls, first: int, last: int, seed: int | None = None) -> "ModelId":
        """The cascade step that re-initialises convolutions first..last (a group; with `seed`,
        one of its models)."""
        return cls("random", seed, tuple(range(first, last + 1)))

    @property
    def group(self) -> "ModelId":
        """The group a model belongs to: itself without its seed (a cascade step's draws)."""
        return ModelId("random", None, self.stages) if self.kind == "random" else self

    def __str__(self) -> str:
        if self.kind == "random":
            return "_".join(f"conv{k}" for k in self.stages) + (
                f"_seed{self.seed}" if self.seed is not None else "")
        if self.kind == "lambda":
            return f"lambda_{self.lam:g}_seed{self.seed}"
        return "permuted_labels" if self.kind == "permuted" else self.kind

    @property
    def short(self) -> str:
        """Words for a figure's legend or a table: 'random conv1+conv2', 'permuted labels'."""
        if self.kind == "random":
            return "random " + "+".join(f"conv{k}" for k in self.stages)
        if self.kind == "lambda":
            return f"λ = {self.lam:g}"
        return _WORDS[self.kind][0]

    @property
    def long(self) -> str:
        """Words for a caption: 'conv2 re-initialised over the trained conv1'."""
        if self.kind == "random":
            first = self.stages[0]
            below = (f" over the trained conv1{'..conv' + str(first - 1) if first > 2 else ''}"
                     if first > 1 else "")
            return f"{' and '.join(f'conv{k}' for k in self.stages)} re-initialised{below}"
        if self.kind == "lambda":
            return f"Task 2 trained with λ = {self.lam:g}, seed {self.seed}"
        return _WORDS[self.kind][1]

    @classmethod
    def parse(cls, text: str) -> "ModelId":
        """What `str` wrote, back: ValueError for anything else."""
        if not isinstance(text, str) or len(text) > 400:
            raise ValueError(f"{text!r} is not a model id")
        if text in _NAMED:
            return cls(_NAMED[text])
        match = _LAMBDA.fullmatch(text)
        if match:
            try:
                lam = float(match.group(1))
            except ValueError:
                raise ValueError(f"{text!r} is not a model id") from None
            return cls("lambda", int(match.group(2)), lam=lam)
        stages, _, seed = text.partition("_seed")
        parts = stages.split("_")
        found = [_STAGE.fullmatch(part) for part in parts]
        if not all(found) or (seed and not (seed.isascii() and seed.isdigit())) or (
                _ and not seed):
            raise ValueError(f"{text!r} is not a model id (e.g. trained, conv1_conv2_seed1001)")
        numbers = tuple(int(m.group(1)) for m in found)
        if list(numbers) != list(range(numbers[0], numbers[0] + len(numbers))):
            raise ValueError(f"{text!r}: a cascade re-initialises consecutive stages")
        return cls("random", int(seed) if seed else None, numbers)

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

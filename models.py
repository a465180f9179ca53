"""The two networks of the study, and loading their checkpoints.

`TutorialNet` is the classifier of the PyTorch tutorial "Training a Classifier", layer for layer.
`DeconvNet` keeps that encoder and head under the same parameter names (so a Task 1 checkpoint
loads into it) and adds a decoder that mirrors the two convolutional layers the way Zeiler &
Fergus's deconvnet does: unpool with the max-pool switches, rectify, transposed convolution.
Checkpoints are plain state dicts, exactly what the tutorial saves and reloads.
"""
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.core.common import UsageError

# --- the architecture, described once: every shape, receptive field and figure derives from it ---

MAX_STAGES = 16  # conv stages, and fully connected layers, of any network described to us
MAX_WEIGHTS = 50_000_000  # 200 MB of float32, encoder + decoder + head (deep4: about 1.2 M)
MAX_ACTIVATIONS = 20_000_000  # one image's conv maps, 80 MB (deep4: about 60 k)


@dataclass(frozen=True)
class ConvLayer:
    """One encoder stage: conv (kernel x kernel, stride 1, `padding`) -> ReLU -> max-pool (`pool`).

    Sizes are map sides in units; `receptive_field` and `stride` are in input pixels: a pooled
    unit sees a `receptive_field`-pixel square, and neighbouring units sit `stride` pixels apart.
    `offset` is how many pixels unit 0's field starts before the image's first pixel (0 without
    padding): unit i's field covers pixels i*stride - offset up to that plus receptive_field - 1,
    on each axis, and may reach past the border.
    """

    index: int  # 1 for z1, 2 for z2, ...
    in_channels: int
    channels: int
    kernel: int
    pool: int
    size_in: int  # side of the map this stage reads
    receptive_field_in: int  # receptive field (pixels) of one unit of that map
    stride_in: int  # pixels between neighbouring units of that map
    padding: int = 0
    offset_in: int = 0  # pixels by which unit 0 of that map's field starts before pixel 0

    @property
    def name(self) -> str:
        return f"z{self.index}"

    @property
    def conv_size(self) -> int:
        """Side of the map after the convolution (before pooling)."""
        return self.size_in + 2 * self.padding - self.kernel + 1

    @property
    def size(self) -> int:
        """Side of the pooled map z (after pooling)."""
        return self.conv_size // self.pool

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def receptive_field(self) -> int:
        """Pixels seen by one pooled unit: the kernel widens the field, then the pool does
        (padding moves the field, it does not widen it)."""
        after_conv = self.receptive_field_in + (self.kernel - 1) * self.stride_in
        return after_conv + (self.pool - 1) * self.stride_in

    @property
    def stride(self) -> int:
        return self.stride_in * self.pool

    @property
    def offset(self) -> int:
        """Pixels by which unit 0's field starts before pixel 0: the conv's unit 0 reads input
        units -padding.., whose fields start padding * stride_in pixels further out (pooling
        starts its windows at conv unit 0, so it moves nothing)."""
        return self.offset_in + self.padding * self.stride_in

    def describe(self) -> dict:
        """The stage as plain numbers (for metrics files, the explorer page and the report)."""
        return {"name": self.name, "in_channels": self.in_channels, "channels": self.channels,
                "kernel": self.kernel, "padding": self.padding, "pool": self.pool,
                "size_in": self.size_in, "conv_size": self.conv_size, "size": self.size,
                "receptive_field": self.receptive_field, "stride": self.stride,
                # only where nonzero: the descriptions of unpadded nets stay as they were
                **({"offset": self.offset} if self.offset else {})}


@dataclass(frozen=True)
class Architecture:
    """A network of the tutorial's kind: conv stages (one per entry of `channels`, each
    kernel x kernel with `padding`, ReLU, pool x pool max-pool), then fully connected layers of
    widths `hidden` and a `classes`-way output. Depth is len(channels): nothing else in the
    repository assumes two stages.

    `batchnorm` puts a BatchNorm2d between each conv and its ReLU (for training deeper nets;
    off by default, so the tutorial's modules, state dicts and numbers are untouched).
    `fold_batchnorm` turns a trained one into the same function without BatchNorm, which is
    what the deconvnet and Task 3 read."""

    image_channels: int = 3
    image_size: int = 32
    channels: tuple[int, ...] = (6, 16)
    kernel: int = 5
    pool: int = 2
    hidden: tuple[int, ...] = (120, 84)
    classes: int = 10
    padding: int = 0
    batchnorm: bool = False

    def __post_init__(self):
        """Every value checked before anything is built: whole numbers in range, at least one
        unit left after every stage, and weights and one image's maps within MAX_WEIGHTS and
        MAX_ACTIVATIONS (a description read from a file may ask for terabytes)."""
        def whole(name: str, value: object, low: int, high: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name} is {value!r}, not a whole number in [{low}, {high}]")
        whole("image_channels", self.image_channels, 1, 16)
        whole("image_size", self.image_size, 4, 1024)
        for name, values, low, high in (("channels", self.channels, 1, 4096),
                                        ("hidden", self.hidden, 1, 65536)):
            if not isinstance(values, tuple) or len(values) > MAX_STAGES or (
                    name == "channels" and not values):
                raise ValueError(f"{name} is {values!r}, not a tuple of at most {MAX_STAGES} "
                                 "widths" + (" (at least one)" if name == "channels" else ""))
            for value in values:
                whole(name, value, low, high)
        whole("kernel", self.kernel, 1, 31)
        whole("pool", self.pool, 1, 16)
        whole("padding", self.padding, 0, self.kernel - 1)
        whole("classes", self.classes, 1, 10000)
        if not isinstance(self.batchnorm, bool):
            raise ValueError(f"batchnorm is {self.batchnorm!r}, not true or false")
        stages = self.layers  # raises when a stage has no units left
        activations = sum(s.channels * s.conv_size ** 2 for s in stages)
        weights = (2 * sum(s.in_channels * s.channels * s.kernel ** 2 + s.channels for s in stages)
                   + sum(a * b + b for a, b in zip(self.widths, self.widths[1:])))
        if weights > MAX_WEIGHTS or activations > MAX_ACTIVATIONS:
            raise ValueError(f"the network would have {weights:,} weights and {activations:,} "
                             f"values per image's maps, over the limits of {MAX_WEIGHTS:,} and "
                             f"{MAX_ACTIVATIONS:,}")

    @property
    def layers(self) -> tuple[ConvLayer, ...]:
        stages, size, field, stride, previous = [], self.image_size, 1, 1, self.image_channels
        offset = 0
        for index, channels in enumerate(self.channels, start=1):
            stage = ConvLayer(index, previous, channels, self.kernel, self.pool, size, field, stride,
                              self.padding, offset)
            if stage.size < 1:
                raise ValueError(f"stage {index} of {self} has no units left "
                                 f"(a {size}-unit map, kernel {self.kernel}, pool {self.pool})")
            stages.append(stage)
            size, field, stride, previous = stage.size, stage.receptive_field, stage.stride, channels
            offset = stage.offset
        return tuple(stages)

    def layer(self, index: int) -> ConvLayer:
        """Stage `index` (1 = z1, 2 = z2, ...)."""
        return self.layers[index - 1]

    @property
    def depth(self) -> int:
        return len(self.channels)

    @property
    def flat_features(self) -> int:
        """Inputs of fc1: the last pooled map, flattened."""
        last = self.layers[-1]
        return last.channels * last.size * last.size

    @property
    def widths(self) -> tuple[int, ...]:
        """Inputs and outputs of the fully connected layers fc1, fc2, ...: (400, 120, 84, 10)."""
        return (self.flat_features, *self.hidden, self.classes)

    @classmethod
    def from_description(cls, described: dict) -> "Architecture":
        """The architecture a metrics file's "architecture" (from `describe`) records, checked:
        ValueError naming the field for anything `describe` could not have written (the values'
        types and ranges by __post_init__, and that the stages agree with each other and the
        fully connected widths with the maps)."""
        if not isinstance(described, dict):
            raise ValueError("the architecture is not an object")
        layers, fc = described.get("layers"), described.get("fc")
        if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_STAGES or not all(
                isinstance(layer, dict) for layer in layers):
            raise ValueError(f"layers is not a list of 1 to {MAX_STAGES} stages")
        if not isinstance(fc, list) or not 2 <= len(fc) <= MAX_STAGES + 2:
            raise ValueError("fc is not a list of the fully connected widths")
        shared = {key: layers[0].get(key, 0 if key == "padding" else None)
                  for key in ("kernel", "pool", "padding")}
        for k, layer in enumerate(layers, start=1):
            for key, value in shared.items():
                if layer.get(key, 0 if key == "padding" else None) != value:
                    raise ValueError(f"stage {k}'s {key} differs from stage 1's")
        batchnorm = described.get("batchnorm", False)
        arch = cls(image_channels=described.get("image_channels"),
                   image_size=described.get("image_size"),
                   channels=tuple(layer.get("channels") for layer in layers),
                   kernel=shared["kernel"], pool=shared["pool"], padding=shared["padding"],
                   hidden=tuple(fc[1:-1]), classes=fc[-1], batchnorm=batchnorm)
        if fc[0] != arch.flat_features:
            raise ValueError(f"fc starts at {fc[0]!r}, but the last maps hold "
                             f"{arch.flat_features} values")
        return arch

    def describe(self) -> dict:
        """The architecture as plain values; "batchnorm" appears only when set, so the
        descriptions of networks without it are what they were before the flag existed."""
        described = {"image_channels": self.image_channels, "image_size": self.image_size,
                     "layers": [stage.describe() for stage in self.layers], "fc": list(self.widths)}
        return {**described, "batchnorm": True} if self.batchnorm else described


ARCHITECTURE = Architecture()  # the tutorial's network, the default everywhere

# Networks of the same kind, by name (`--arch`): the deconvnet mirror stays exact for each.
ARCHITECTURES = {
    "tutorial": ARCHITECTURE,
    # three 3x3 stages (maps 15, 6 and 2 units wide): the smallest deeper net, for tests and
    # quick looks
    "small3": Architecture(channels=(8, 16, 32), kernel=3, hidden=(64,)),
    # four 3x3 stages with padding 1 (maps 16, 8, 4 and 2 units wide) of 32-64-128-256
    # channels, BatchNorm in training, a linear head: the deeper net of the same kind
    "deep4": Architecture(channels=(32, 64, 128, 256), kernel=3, padding=1, hidden=(),
                          batchnorm=True),
}


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d without its integer step counter (`num_batches_tracked`, used only when
    momentum is None): every value of a state dict stays a float weight, which the checkpoint
    and training-state checks require."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.num_batches_tracked = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
        # BatchNorm2d's own version adds the counter to state dicts without version metadata
        nn.Module._load_from_state_dict(self, state_dict, prefix, local_metadata, *args)


class TutorialNet(nn.Module):
    """conv -> ReLU -> max-pool per stage of `arch`, then fully connected layers with ReLU
    between them; for ARCHITECTURE: conv 3->6 5x5, pool 2, conv 6->16 5x5, pool 2,
    fc 400->120->84->10, the tutorial's net.

    Parameters are named as the tutorial names them (conv1, conv2, ..., fc1, fc2, ...) and made
    in its order, so its checkpoints load and a seed gives the tutorial's initial weights.
    """

    def __init__(self, arch: Architecture = ARCHITECTURE) -> None:
        super().__init__()
        self.arch = arch
        for stage in arch.layers:
            self.add_module(f"conv{stage.index}", nn.Conv2d(stage.in_channels, stage.channels,
                                                            stage.kernel, padding=stage.padding))
            if arch.batchnorm:  # draws no random numbers: the convs' initial weights stay
                self.add_module(f"bn{stage.index}", BatchNorm(stage.channels))
        widths = arch.widths
        for k in range(1, len(widths)):
            self.add_module(f"fc{k}", nn.Linear(widths[k - 1], widths[k]))

    def convs(self) -> list[nn.Conv2d]:
        """conv1, conv2, ...: the encoder's convolutions, first stage first."""
        return [getattr(self, f"conv{stage.index}") for stage in self.arch.layers]

    def pre_activation(self, stage: ConvLayer, x: torch.Tensor) -> torch.Tensor:
        """Stage `stage`'s map before its ReLU: conv, then BatchNorm where the architecture
        has it (without it, exactly the conv: the tutorial's computation)."""
        h = getattr(self, f"conv{stage.index}")(x)
        return getattr(self, f"bn{stage.index}")(h) if self.arch.batchnorm else h

    def fcs(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{k}") for k in range(1, len(self.arch.widths))]

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores from the last pooled feature map (N, 16, 5, 5 for the tutorial)."""
        x = torch.flatten(z, 1)
        *hidden, last = self.fcs()
        for fc in hidden:
            x = F.relu(fc(x))
        return last(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.arch.layers:
            x = F.max_pool2d(F.relu(self.pre_activation(stage, x)), stage.pool, stage.pool)
        return self.head(x)

    def encode(self, x: torch.Tensor, through: int | None = None) -> "Latents":
        """Every stage's pooled map and max-pool switches (what the decoder and the probes read;
        the classifier itself needs only the last map); with `through`, stages 1..through only,
        all that decoding from layer `through` reads."""
        maps, switches = [], []
        for stage in self.arch.layers[:through]:
            x, where = F.max_pool2d(F.relu(self.pre_activation(stage, x)), stage.pool, stage.pool,
                                    return_indices=True)
            maps.append(x)
            switches.append(where)
        return Latents(tuple(maps), tuple(switches))


class Latents(NamedTuple):
    """What the encoder hands the decoder: every stage's pooled map and its max-pool switches
    (argmax positions in that stage's conv map), first stage first."""

    maps: tuple[torch.Tensor, ...]  # z1 (N, 6, 14, 14), z2 (N, 16, 5, 5), ...
    switches: tuple[torch.Tensor | None, ...]

    def at(self, layer: int) -> torch.Tensor:
        """The pooled map of layer `layer` (1 = z1, 2 = z2, ...)."""
        return self.maps[layer - 1]

    def switches_at(self, layer: int) -> torch.Tensor:
        return self.switches[layer - 1]

    @property
    def last(self) -> torch.Tensor:
        """The pooled map the classifier head reads."""
        return self.maps[-1]

    def with_map(self, layer: int, z: torch.Tensor) -> "Latents":
        """The same latents with layer `layer`'s map replaced by z (switches unchanged)."""
        maps = list(self.maps)
        maps[layer - 1] = z
        return Latents(tuple(maps), self.switches)

    def apply(self, function) -> "Latents":
        """Every map and switch tensor passed through `function` (e.g. a slice of the batch)."""
        return Latents(tuple(function(z) for z in self.maps),
                       tuple(None if s is None else function(s) for s in self.switches))


class DeconvNet(TutorialNet):
    """TutorialNet plus a mirror decoder; `forward` returns (logits, reconstruction).

    Decoder, top stage first, per stage k: MaxUnpool2d(switches k) -> ReLU ->
    ConvTranspose2d(deconv k: the transpose of conv k's shape). For the tutorial's net:
        z2 -> unpool -> ReLU -> ConvTranspose2d(16->6, 5x5) -> 6x14x14
           -> unpool -> ReLU -> ConvTranspose2d(6->3, 5x5)  -> 3x32x32
    The reconstruction lives in the same normalised space as the input ([-1, 1] for real data).
    """

    def __init__(self, arch: Architecture = ARCHITECTURE) -> None:
        super().__init__(arch)
        for stage in reversed(arch.layers):  # deconv2 before deconv1, as the tutorial net was
            self.add_module(f"deconv{stage.index}", nn.ConvTranspose2d(
                stage.channels, stage.in_channels, stage.kernel, padding=stage.padding))

    def deconvs(self) -> list[nn.ConvTranspose2d]:
        """deconv1, deconv2, ...: deconv k maps stage k's unpooled map back to stage k's input."""
        return [getattr(self, f"deconv{stage.index}") for stage in self.arch.layers]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.encode(x)
        return self.head(latents.last), self.decode(latents, layer=self.arch.depth)

    def decode(self, latents: Latents, layer: int, keep: Sequence[Sequence[int]] | None = None,
               tied: bool = False) -> torch.Tensor:
        """Images (N, 3, 32, 32) from the layer-`layer` latent (1: z1, 2: z2, ...) of `latents`.

        keep=None decodes every channel. Otherwise `latents` holds one image and output k keeps
        only the channels in keep[k], all others zeroed: [[c] for c in range(6)] gives the six
        single-channel images of z1, and [[]] decodes the empty latent (biases and switches alone).
        Switches always come from `latents`. `tied` decodes with the encoder's own filters,
        transposed and without bias (Zeiler & Fergus's deconvnet) instead of the learned ones.
        """
        if tied and self.arch.batchnorm:
            raise UsageError("the tied deconvnet reads conv weights without BatchNorm: decode "
                             "with models.fold_batchnorm(net) instead")
        z = latents.at(layer)
        if keep is not None:
            mask = torch.zeros(len(keep), z.shape[1], 1, 1, dtype=z.dtype, device=z.device)
            for k, channels in enumerate(keep):
                mask[k, list(channels)] = 1
            z = z * mask  # one image broadcast to len(keep) copies
        n = len(z)
        for stage in reversed(self.arch.layers[:layer]):
            switches = latents.switches_at(stage.index).expand(n, -1, -1, -1)
            h = F.relu(F.max_unpool2d(z, switches, stage.pool, stage.pool,
                                      output_size=(stage.conv_size,) * 2))
            if tied:
                weight = getattr(self, f"conv{stage.index}").weight
                z = F.conv_transpose2d(h, weight, padding=stage.padding)
            else:
                z = getattr(self, f"deconv{stage.index}")(h)
        return z

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters that only the reconstruction loss reaches."""
        return [p for deconv in reversed(self.deconvs()) for p in deconv.parameters()]

    def encoder_and_head_parameters(self) -> list[nn.Parameter]:
        decoder = {id(p) for p in self.decoder_parameters()}
        return [p for p in self.parameters() if id(p) not in decoder]


@torch.no_grad()
def fold_batchnorm(net: TutorialNet) -> TutorialNet:
    """The same network without BatchNorm, each one folded into its conv (eval-mode function:
    BN(conv(x)) = conv'(x) with w' = w * g, b' = (b - running_mean) * g + beta,
    g = gamma / sqrt(running_var + eps)). A network without BatchNorm comes back as a copy.

    The folded net is a plain network of the tutorial's kind, so its tied deconvnet, Task 3's
    receptive fields and the explorer read it like any other; its logits equal the original's
    in eval mode.
    """
    with torch.random.fork_rng(devices=[]):  # building it must not move the caller's seed
        folded = type(net)(replace(net.arch, batchnorm=False))
    folded.to(next(net.parameters()))  # the original's device and dtype
    state = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("bn")}
    if net.arch.batchnorm:
        for stage in net.arch.layers:
            bn = getattr(net, f"bn{stage.index}")
            gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv = f"conv{stage.index}"
            state[f"{conv}.weight"] = net.state_dict()[f"{conv}.weight"] * gain.view(-1, 1, 1, 1)
            state[f"{conv}.bias"] = (net.state_dict()[f"{conv}.bias"] - bn.running_mean) * gain + bn.bias
    folded.load_state_dict(state)
    return folded.train(net.training)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. (1)'s L_rec: (1/3) * sum over R,G,B of ||x_hat_c - x_c||_F^2, averaged over the batch.

    The Frobenius norm sums over the 32x32 pixels, so this is H*W = 1024 times
    `nn.MSELoss()` (which averages over pixels and channels too): lambda here equals
    lambda_mse / 1024 for a loss written with the mean squared error.
    """
    per_image = (x_hat - x).pow(2).sum(dim=(1, 2, 3)) / x.shape[1]
    return per_image.mean()

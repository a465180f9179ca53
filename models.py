"""The two networks of the study, and loading their checkpoints.

`TutorialNet` is the classifier of the PyTorch tutorial "Training a Classifier", layer for layer.
`DeconvNet` keeps that encoder and head under the same parameter names (so a Task 1 checkpoint
loads into it) and adds a decoder that mirrors the two convolutional layers the way Zeiler &
Fergus's deconvnet does: unpool with the max-pool switches, rectify, transposed convolution.
Checkpoints are plain state dicts, exactly what the tutorial saves and reloads.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from study.common import UsageError
from study.readers import load_torch_file



# --- the architecture, described once: every shape, receptive field and figure derives from it ---

@dataclass(frozen=True)
class ConvLayer:
    """One encoder stage, conv (kernel x kernel, stride 1, no padding) -> ReLU -> max-pool.

    Sizes are map sides in units; `receptive_field` and `stride` are in input pixels: a pooled
    unit sees a `receptive_field`-pixel square, and neighbouring units sit `stride` pixels apart.
    """

    index: int  # 1 for z1, 2 for z2
    in_channels: int
    channels: int
    kernel: int
    pool: int
    size_in: int  # side of the map this stage reads
    receptive_field_in: int  # receptive field (pixels) of one unit of that map
    stride_in: int  # pixels between neighbouring units of that map

    @property
    def name(self) -> str:
        return f"z{self.index}"

    @property
    def conv_size(self) -> int:
        """Side of the map after the convolution (before pooling)."""
        return self.size_in - self.kernel + 1

    @property
    def size(self) -> int:
        """Side of the pooled map z (after pooling)."""
        return self.conv_size // self.pool

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    @property
    def receptive_field(self) -> int:
        """Pixels seen by one pooled unit: the kernel widens the field, then the pool does."""
        after_conv = self.receptive_field_in + (self.kernel - 1) * self.stride_in
        return after_conv + (self.pool - 1) * self.stride_in

    @property
    def stride(self) -> int:
        return self.stride_in * self.pool

    def describe(self) -> dict:
        """The stage as plain numbers (for metrics files, the explorer page and the report)."""
        return {"name": self.name, "in_channels": self.in_channels, "channels": self.channels,
                "kernel": self.kernel, "pool": self.pool, "size_in": self.size_in,
                "conv_size": self.conv_size, "size": self.size,
                "receptive_field": self.receptive_field, "stride": self.stride}


@dataclass(frozen=True)
class Architecture:
    """The tutorial's network: image size, conv stages (channels, kernel, pool), fc widths."""

    image_channels: int = 3
    image_size: int = 32
    channels: tuple[int, ...] = (6, 16)
    kernel: int = 5
    pool: int = 2
    hidden: tuple[int, ...] = (120, 84)
    classes: int = 10

    @property
    def layers(self) -> tuple[ConvLayer, ...]:
        stages, size, field, stride, previous = [], self.image_size, 1, 1, self.image_channels
        for index, channels in enumerate(self.channels, start=1):
            stage = ConvLayer(index, previous, channels, self.kernel, self.pool, size, field, stride)
            stages.append(stage)
            size, field, stride, previous = stage.size, stage.receptive_field, stage.stride, channels
        return tuple(stages)

    def layer(self, index: int) -> ConvLayer:
        """Stage `index` (1 = z1, 2 = z2)."""
        return self.layers[index - 1]

    @property
    def flat_features(self) -> int:
        """Inputs of fc1: the last pooled map, flattened."""
        last = self.layers[-1]
        return last.channels * last.size * last.size

    @classmethod
    def from_description(cls, described: dict) -> "Architecture":
        """The architecture a metrics file's "architecture" (from `describe`) records."""
        layers = described["layers"]
        return cls(image_channels=described["image_channels"], image_size=described["image_size"],
                   channels=tuple(layer["channels"] for layer in layers),
                   kernel=layers[0]["kernel"], pool=layers[0]["pool"],
                   hidden=tuple(described["fc"][1:-1]), classes=described["fc"][-1])

    def describe(self) -> dict:
        return {"image_channels": self.image_channels, "image_size": self.image_size,
                "layers": [stage.describe() for stage in self.layers],
                "fc": [self.flat_features, *self.hidden, self.classes]}


ARCHITECTURE = Architecture()
Z1_SHAPE = ARCHITECTURE.layer(1).shape  # (6, 14, 14)
Z2_SHAPE = ARCHITECTURE.layer(2).shape  # (16, 5, 5)


class TutorialNet(nn.Module):
    """conv 3->6 5x5, ReLU, pool 2, conv 6->16 5x5, ReLU, pool 2, fc 400->120->84->10.

    The layer names are the tutorial's (so its checkpoints load); the sizes come from ARCHITECTURE.
    """

    def __init__(self, arch: Architecture = ARCHITECTURE) -> None:
        super().__init__()
        first, second = arch.layers
        self.conv1 = nn.Conv2d(first.in_channels, first.channels, first.kernel)
        self.pool = nn.MaxPool2d(arch.pool, arch.pool)
        self.conv2 = nn.Conv2d(second.in_channels, second.channels, second.kernel)
        widths = [arch.flat_features, *arch.hidden, arch.classes]
        self.fc1 = nn.Linear(widths[0], widths[1])
        self.fc2 = nn.Linear(widths[1], widths[2])
        self.fc3 = nn.Linear(widths[2], widths[3])
        self.arch = arch

    def head(self, z2: torch.Tensor) -> torch.Tensor:
        """Class scores from the second pooled feature map (N,16,5,5)."""
        x = torch.flatten(z2, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.head(x)


class Latents(NamedTuple):
    """What the encoder hands the decoder: both pooled maps and their max-pool switches."""

    z1: torch.Tensor  # (N, *Z1_SHAPE)
    indices1: torch.Tensor  # argmax positions of pool 1, in conv1's map
    z2: torch.Tensor  # (N, *Z2_SHAPE)
    indices2: torch.Tensor  # argmax positions of pool 2, in conv2's map

    def at(self, layer: int) -> torch.Tensor:
        """The pooled map of layer 1 (z1) or 2 (z2)."""
        return self.z1 if layer == 1 else self.z2

    def with_map(self, layer: int, z: torch.Tensor) -> "Latents":
        """The same latents with layer `layer`'s map replaced by z (switches unchanged)."""
        return self._replace(**{f"z{layer}": z})


class DeconvNet(TutorialNet):
    """TutorialNet plus a mirror decoder; `forward` returns (logits, reconstruction).

    Decoder, layer 2 then layer 1:
        z2 -> MaxUnpool2d(indices2) -> ReLU -> ConvTranspose2d(16->6, 5x5) -> 6x14x14
           -> MaxUnpool2d(indices1) -> ReLU -> ConvTranspose2d(6->3, 5x5)  -> 3x32x32
    The reconstruction lives in the same normalised space as the input ([-1, 1] for real data).
    """

    def __init__(self, arch: Architecture = ARCHITECTURE) -> None:
        super().__init__(arch)
        first, second = arch.layers
        self.pool = nn.MaxPool2d(arch.pool, arch.pool, return_indices=True)
        self.unpool = nn.MaxUnpool2d(arch.pool, arch.pool)
        self.deconv2 = nn.ConvTranspose2d(second.channels, second.in_channels, second.kernel)
        self.deconv1 = nn.ConvTranspose2d(first.channels, first.in_channels, first.kernel)

    def encode(self, x: torch.Tensor) -> Latents:
        z1, indices1 = self.pool(F.relu(self.conv1(x)))
        z2, indices2 = self.pool(F.relu(self.conv2(z1)))
        return Latents(z1, indices1, z2, indices2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.encode(x)
        return self.head(latents.z2), self.decode(latents, layer=2)

    def decode(self, latents: Latents, layer: int, keep: Sequence[Sequence[int]] | None = None,
               tied: bool = False) -> torch.Tensor:
        """Images (N, 3, 32, 32) from the layer-`layer` latent (1: z1, 2: z2) of `latents`.

        keep=None decodes every channel. Otherwise `latents` holds one image and output k keeps
        only the channels in keep[k], all others zeroed: [[c] for c in range(6)] gives the six
        single-channel images of z1, and [[]] decodes the empty latent (biases and switches alone).
        Switches always come from `latents`. `tied` decodes with the encoder's own filters,
        transposed and without bias (Zeiler & Fergus's deconvnet) instead of the learned ones.
        """
        z = latents.at(layer)
        if keep is not None:
            mask = torch.zeros(len(keep), z.shape[1], 1, 1, dtype=z.dtype, device=z.device)
            for k, channels in enumerate(keep):
                mask[k, list(channels)] = 1
            z = z * mask  # one image broadcast to len(keep) copies
        n = len(z)
        first, second = self.arch.layers
        indices1 = latents.indices1.expand(n, -1, -1, -1)
        if layer == 2:
            indices2 = latents.indices2.expand(n, -1, -1, -1)
            h = F.relu(self.unpool(z, indices2, output_size=(second.conv_size,) * 2))
            z = (F.conv_transpose2d(h, self.conv2.weight) if tied else self.deconv2(h))
        h = F.relu(self.unpool(z, indices1, output_size=(first.conv_size,) * 2))
        return F.conv_transpose2d(h, self.conv1.weight) if tied else self.deconv1(h)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters that only the reconstruction loss reaches."""
        return [*self.deconv2.parameters(), *self.deconv1.parameters()]

    def encoder_and_head_parameters(self) -> list[nn.Parameter]:
        decoder = {id(p) for p in self.decoder_parameters()}
        return [p for p in self.parameters() if id(p) not in decoder]


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. (1)'s L_rec: (1/3) * sum over R,G,B of ||x_hat_c - x_c||_F^2, averaged over the batch.

    The Frobenius norm sums over the 32x32 pixels, so this is H*W = 1024 times
    `nn.MSELoss()` (which averages over pixels and channels too): lambda here equals
    lambda_mse / 1024 for a loss written with the mean squared error.
    """
    per_image = (x_hat - x).pow(2).sum(dim=(1, 2, 3)) / x.shape[1]
    return per_image.mean()


# --- checkpoints: plain state dicts, told apart by their keys ---

def architecture_of(state: dict) -> str | None:
    """'DeconvNet' or 'TutorialNet' by the keys of a state dict; None for anything else."""
    keys = {k for k in state if isinstance(k, str)}
    classifier = set(TutorialNet().state_dict())
    if classifier <= keys and any(k.startswith("deconv") for k in keys):
        return "DeconvNet"
    if classifier <= keys:
        return "TutorialNet"
    return None


def check_state_dict(state: object, path: Path, what: str,
                     shapes: dict[str, torch.Size] | None = None) -> dict:
    """`state` if it is a state dict of weights this repo can use; else one UsageError.

    Required: a non-empty dict with text keys; every value a dense (not sparse, not meta)
    tensor of a real floating-point dtype (float16/32/64, bfloat16; not integer, bool or
    complex) holding finite numbers; with `shapes`, each key found there has that shape.
    Checked before any use, so a crafted file fails here and not after a whole run.
    """
    from study.common import printable

    fix = "pass cifar_net.pth or deconv_net.pth as this repo writes them"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{what} {path} is not a model state dict (as saved by "
                         "torch.save(net.state_dict(), PATH)); pass cifar_net.pth or deconv_net.pth")
    if not state:
        raise UsageError(f"{what} {path} is an empty state dict (no weights at all); {fix}")
    keys = [k for k in state if not isinstance(k, str)]
    if keys:
        key = keys[0]
        raise UsageError(f"{what} {path} has a key that is not a parameter name "
                         f"({type(key).__name__} {printable(repr(key)[:40])}); {fix}")
    for name, tensor in state.items():
        shown = printable(name)
        if tensor.layout != torch.strided or tensor.is_meta or tensor.device.type != "cpu":
            kind = "meta" if tensor.is_meta else str(tensor.layout).replace("torch.", "")
            raise UsageError(f"{what} {path}: {shown} is a {kind} tensor, not a dense one "
                             f"of numbers; {fix}")
        if not tensor.is_floating_point() or tensor.dtype in (torch.float8_e4m3fn,
                                                              torch.float8_e5m2):
            raise UsageError(f"{what} {path}: {shown} holds {str(tensor.dtype).replace('torch.', '')} "
                             f"values, not float32 weights; {fix}")
        if shapes is not None and name in shapes and tensor.shape != shapes[name]:
            raise UsageError(f"{what} {path} does not fit this architecture: {shown} has "
                             f"shape {tuple(tensor.shape)}, it needs {tuple(shapes[name])}; {fix}")
        if not bool(tensor.isfinite().all()):
            raise UsageError(f"{what} {path} holds non-finite weights ({shown} has NaN or inf): "
                             "the run that wrote it diverged; retrain it")
    return state


def read_state_dict(path: Path, what: str, data: bytes | None = None) -> tuple[str, dict]:
    """(architecture, state dict) of a checkpoint file (or of its bytes `data`, read once by the
    caller), or one UsageError saying what is wrong."""
    from study.common import printable

    state = check_state_dict(load_torch_file(path, what, data), path, what)
    architecture = architecture_of(state)
    if architecture is None:
        shown = ", ".join(printable(k) for k in list(state)[:3])
        raise UsageError(f"{what} {path} holds neither the tutorial net nor the DeconvNet "
                         f"(keys {shown}{', ...' if len(state) > 3 else ''}); pass "
                         "cifar_net.pth or deconv_net.pth")
    model = DeconvNet() if architecture == "DeconvNet" else TutorialNet()
    check_state_dict(state, path, what, {k: v.shape for k, v in model.state_dict().items()})
    return architecture, state


def load_weights(model: nn.Module, state: dict, path: Path, what: str, strict: bool = True) -> None:
    """load_state_dict with one line for a checkpoint of another shape."""
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()),
                      str(error).strip())
        raise UsageError(f"{what} {path} does not fit this architecture: {detail}") from None


def load_model(path: Path, architecture: str, what: str, data: bytes | None = None) -> nn.Module:
    """A model of `architecture` with the weights of `path` (a state dict of that architecture);
    from `data` when the caller has read the file's bytes already."""
    found, state = read_state_dict(path, what, data)
    if found != architecture:
        raise UsageError(f"{what} {path} holds a {found}, not a {architecture}")
    model = DeconvNet() if architecture == "DeconvNet" else TutorialNet()
    load_weights(model, state, path, what)
    return model

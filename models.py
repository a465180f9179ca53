"""The two networks of the study.

`TutorialNet` is the classifier of the PyTorch tutorial "Training a Classifier", layer for layer.
`DeconvNet` keeps that encoder and head under the same parameter names (so a Task 1 checkpoint
loads into it) and adds a decoder that mirrors the two convolutional layers the way Zeiler &
Fergus's deconvnet does: unpool with the max-pool switches, rectify, transposed convolution.
"""
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_SHAPE = (3, 32, 32)
Z1_SHAPE = (6, 14, 14)  # after conv1 (5x5) -> ReLU -> 2x2 max-pool
Z2_SHAPE = (16, 5, 5)  # after conv2 (5x5) -> ReLU -> 2x2 max-pool


class TutorialNet(nn.Module):
    """conv 3->6 5x5, ReLU, pool 2, conv 6->16 5x5, ReLU, pool 2, fc 400->120->84->10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

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

    z1: torch.Tensor  # (N, 6, 14, 14)
    indices1: torch.Tensor  # argmax positions of pool 1, in the 28x28 map
    z2: torch.Tensor  # (N, 16, 5, 5)
    indices2: torch.Tensor  # argmax positions of pool 2, in the 10x10 map


class DeconvNet(TutorialNet):
    """TutorialNet plus a mirror decoder; `forward` returns (logits, reconstruction).

    Decoder, layer 2 then layer 1:
        z2 -> MaxUnpool2d(indices2) -> ReLU -> ConvTranspose2d(16->6, 5x5) -> 6x14x14
           -> MaxUnpool2d(indices1) -> ReLU -> ConvTranspose2d(6->3, 5x5)  -> 3x32x32
    The reconstruction lives in the same normalised space as the input ([-1, 1] for real data).
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.deconv2 = nn.ConvTranspose2d(16, 6, 5)
        self.deconv1 = nn.ConvTranspose2d(6, 3, 5)

    def encode(self, x: torch.Tensor) -> Latents:
        z1, indices1 = self.pool(F.relu(self.conv1(x)))
        z2, indices2 = self.pool(F.relu(self.conv2(z1)))
        return Latents(z1, indices1, z2, indices2)

    def decode_layer1(self, z1: torch.Tensor, indices1: torch.Tensor) -> torch.Tensor:
        """6x14x14 map -> 3x32x32 image (unpool to 28x28, ReLU, transposed conv1)."""
        h = self.unpool(z1, indices1, output_size=(28, 28))
        return self.deconv1(F.relu(h))

    def decode_layer2(
        self, z2: torch.Tensor, indices2: torch.Tensor, indices1: torch.Tensor
    ) -> torch.Tensor:
        """16x5x5 map -> 3x32x32 image, through both decoder layers."""
        h = self.unpool(z2, indices2, output_size=(10, 10))
        z1_hat = self.deconv2(F.relu(h))
        return self.decode_layer1(z1_hat, indices1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.encode(x)
        logits = self.head(latents.z2)
        x_hat = self.decode_layer2(latents.z2, latents.indices2, latents.indices1)
        return logits, x_hat

    def tied_decode_layer1(self, z1: torch.Tensor, indices1: torch.Tensor) -> torch.Tensor:
        """Zeiler & Fergus's original deconvnet: the encoder's own conv1 filters, transposed.

        Same switches and rectification as the learned decoder, no bias, nothing trained.
        """
        h = F.relu(self.unpool(z1, indices1, output_size=(28, 28)))
        return F.conv_transpose2d(h, self.conv1.weight)

    def tied_decode_layer2(
        self, z2: torch.Tensor, indices2: torch.Tensor, indices1: torch.Tensor
    ) -> torch.Tensor:
        h = F.relu(self.unpool(z2, indices2, output_size=(10, 10)))
        return self.tied_decode_layer1(F.conv_transpose2d(h, self.conv2.weight), indices1)

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


MODELS = {"TutorialNet": TutorialNet, "DeconvNet": DeconvNet}

"""models.py: shapes, unpooling, eq. (1), gradients, carrying Task 1 weights over."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import Architecture, DeconvNet, TutorialNet, reconstruction_loss
from study.training.checkpoints import architecture_of, load_model


def test_tutorial_net_outputs_ten_scores():
    assert TutorialNet()(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def test_deconv_net_shapes():
    net = DeconvNet()
    x = torch.randn(4, 3, 32, 32)
    latents = net.encode(x)
    assert latents.at(1).shape == (4, 6, 14, 14)
    assert latents.at(2).shape == (4, 16, 5, 5)
    logits, x_hat = net(x)
    assert logits.shape == (4, 10) and x_hat.shape == (4, 3, 32, 32)
    assert net.decode(latents, 1).shape == (4, 3, 32, 32)
    assert net.decode(latents, 2, tied=True).shape == (4, 3, 32, 32)
    assert torch.equal(net.decode(latents, 2), x_hat)


def test_encoding_through_a_layer_stops_there_with_the_same_maps():
    from models import ARCHITECTURES
    torch.manual_seed(0)
    net = DeconvNet(ARCHITECTURES["small3"]).eval()
    x = torch.randn(3, 3, 32, 32)
    # by hand: conv -> ReLU -> 2x2 max-pool with switches, stage after stage
    h, expected = x, []
    for conv in net.convs():
        h, where = F.max_pool2d(F.relu(conv(h)), 2, 2, return_indices=True)
        expected.append((h, where))
    for through in (1, 2, 3):
        latents = net.encode(x, through=through)
        assert len(latents.maps) == len(latents.switches) == through
        for (z, where), got_z, got_where in zip(expected, latents.maps, latents.switches):
            assert torch.equal(got_z, z) and torch.equal(got_where, where)
        # what decoding from that layer reads is all there: the same images as from every stage
        assert torch.equal(net.decode(latents, through), net.decode(net.encode(x), through))


def test_unpooling_puts_each_maximum_back_at_its_argmax():
    x = torch.tensor([[1., 5., 0., 2.],
                      [3., 4., 9., 1.],
                      [0., 0., 7., 8.],
                      [6., 2., 3., 8.5]]).view(1, 1, 4, 4)
    # one stage whose 1x1 convolution is the identity: decode's unpooling is all that acts
    net = DeconvNet(Architecture(image_channels=1, image_size=4, channels=(1,), kernel=1,
                                 hidden=()))
    with torch.no_grad():
        net.conv1.weight.fill_(1.0)
        net.conv1.bias.zero_()
    latents = net.encode(x)
    assert latents.at(1).flatten().tolist() == [5., 9., 6., 8.5]
    restored = net.decode(latents, 1, tied=True)
    expected = torch.tensor([[0., 5., 0., 0.],
                             [0., 0., 9., 0.],
                             [0., 0., 0., 0.],
                             [6., 0., 0., 8.5]]).view(1, 1, 4, 4)
    assert torch.equal(restored, expected)


def test_reconstruction_loss_is_eq_1_and_1024_times_mse():
    torch.manual_seed(0)
    x, x_hat = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    by_hand = 0.0
    for n in range(2):
        frobenius = [torch.linalg.matrix_norm(x_hat[n, c] - x[n, c], "fro") ** 2 for c in range(3)]
        by_hand += sum(frobenius) / 3
    by_hand /= 2
    assert torch.allclose(reconstruction_loss(x_hat, x), by_hand)
    assert torch.allclose(reconstruction_loss(x_hat, x), 1024 * nn.MSELoss()(x_hat, x))


def _grads(lam: float) -> DeconvNet:
    torch.manual_seed(0)
    net = DeconvNet()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    logits, x_hat = net(x)
    (F.cross_entropy(logits, y) + lam * reconstruction_loss(x_hat, x)).backward()
    return net


def test_gradients_reach_encoder_and_decoder():
    net = _grads(1e-3)
    for parameter in [*net.encoder_and_head_parameters(), *net.decoder_parameters()]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_with_lambda_zero_the_decoder_gets_no_gradient():
    net = _grads(0.0)
    for parameter in net.decoder_parameters():
        assert parameter.grad is None or not parameter.grad.any()
    assert net.conv1.weight.grad.abs().sum() > 0


def test_encoder_and_decoder_parameters_are_the_named_layers():
    """The decoder's parameters are exactly deconv1/deconv2's, the rest exactly the tutorial's
    layers (names written here, not derived from the methods under test)."""
    net = DeconvNet()
    names = {id(p): name for name, p in net.named_parameters()}
    decoder = sorted(names[id(p)] for p in net.decoder_parameters())
    encoder = sorted(names[id(p)] for p in net.encoder_and_head_parameters())
    assert decoder == ["deconv1.bias", "deconv1.weight", "deconv2.bias", "deconv2.weight"]
    assert encoder == sorted(f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
                             for kind in ("weight", "bias"))


def test_the_architecture_description_matches_the_modules():
    """Shapes and receptive fields by hand: conv 5x5 then pool 2 on 32 -> 28 -> 14; 14 -> 10
    -> 5; a z1 unit sees 5 + 1 = 6 pixels every 2, a z2 unit 6 + 4*2 + 2 = 16 every 4."""
    from models import ARCHITECTURE
    first, second = ARCHITECTURE.layers
    assert (first.conv_size, first.size, first.receptive_field, first.stride) == (28, 14, 6, 2)
    assert (second.conv_size, second.size, second.receptive_field, second.stride) == (10, 5, 16, 4)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    net = DeconvNet()
    for layer, stage in ((1, first), (2, second)):
        latents = net.encode(x)
        assert tuple(latents.at(layer).shape[1:]) == stage.shape
        # the units at (1, 1) depend only on pixels inside their receptive field
        grad, = torch.autograd.grad(latents.at(layer)[0, :, 1, 1].sum(), x)
        for summed in (1, 0):  # rows, then columns
            support = grad.abs().sum((0, 1)).sum(summed).nonzero().flatten()
            assert len(support) and support.min() >= stage.stride
            assert support.max() < stage.stride + stage.receptive_field


def test_task1_weights_give_identical_logits():
    torch.manual_seed(0)
    classifier = TutorialNet()
    deconv = DeconvNet()
    result = deconv.load_state_dict(classifier.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith(("deconv1.", "deconv2.")) for k in result.missing_keys)
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(classifier(x), deconv(x)[0])


def test_checkpoints_are_told_apart_by_their_keys():
    assert architecture_of(TutorialNet().state_dict()) == "TutorialNet"
    assert architecture_of(DeconvNet().state_dict()) == "DeconvNet"
    assert architecture_of(nn.Linear(2, 2).state_dict()) is None


def test_load_model_reads_a_plain_state_dict(tmp_path):
    torch.manual_seed(0)
    net = DeconvNet()
    torch.save(net.state_dict(), tmp_path / "deconv_net.pth")
    loaded = load_model(tmp_path / "deconv_net.pth", "DeconvNet", "checkpoint")
    x = torch.randn(2, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(net(x), loaded(x)))


def test_a_three_stage_net_has_the_sizes_and_fields_worked_out_by_hand():
    """small3: 3x3 convolutions, pool 2: 32 -> 30 -> 15, 15 -> 13 -> 6, 6 -> 4 -> 2; fields
    3 + 1 = 4 every 2, 4 + 2*2 + 2 = 10 every 4, 10 + 2*4 + 4 = 22 every 8."""
    from models import ARCHITECTURES
    arch = ARCHITECTURES["small3"]
    found = [(s.conv_size, s.size, s.receptive_field, s.stride) for s in arch.layers]
    assert found == [(30, 15, 4, 2), (13, 6, 10, 4), (4, 2, 22, 8)]
    assert arch.widths == (32 * 2 * 2, 64, 10)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    net = DeconvNet(arch)
    assert [name for name, _ in net.named_children()] == [
        "conv1", "conv2", "conv3", "fc1", "fc2", "deconv3", "deconv2", "deconv1"]
    for stage in arch.layers:
        z = net.encode(x).at(stage.index)
        assert tuple(z.shape[1:]) == stage.shape
        grad, = torch.autograd.grad(z[0, :, 1, 1].sum(), x)
        for summed in (1, 0):
            support = grad.abs().sum((0, 1)).sum(summed).nonzero().flatten()
            assert len(support) and support.min() >= stage.stride
            assert support.max() < stage.stride + stage.receptive_field


def test_decoding_a_three_stage_net_is_unpool_relu_and_transposed_conv_per_stage():
    """decode from z3 written out stage by stage with PyTorch's own modules."""
    from models import ARCHITECTURES
    arch = ARCHITECTURES["small3"]
    torch.manual_seed(1)
    net = DeconvNet(arch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h, switches = x, []
        for conv in (net.conv1, net.conv2, net.conv3):
            h, where = F.max_pool2d(F.relu(conv(h)), 2, 2, return_indices=True)
            switches.append(where)
        logits = net.fc2(F.relu(net.fc1(h.flatten(1))))
        for deconv, where, side in ((net.deconv3, switches[2], 4), (net.deconv2, switches[1], 13),
                                    (net.deconv1, switches[0], 30)):
            h = deconv(F.relu(F.max_unpool2d(h, where, 2, 2, output_size=(side, side))))
        got_logits, got_image = net(x)
    assert torch.equal(got_logits, logits)
    assert torch.allclose(got_image, h, atol=1e-6)


def test_an_architecture_without_units_left_is_refused():
    import pytest

    from models import Architecture
    with pytest.raises(ValueError, match="no units left"):
        Architecture(channels=(6, 16, 32), kernel=5).layers

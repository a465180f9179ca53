"""models.py: shapes, unpooling, eq. (1), gradients, carrying Task 1 weights over."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import DeconvNet, TutorialNet, architecture_of, load_model, reconstruction_loss


def test_tutorial_net_outputs_ten_scores():
    assert TutorialNet()(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def test_deconv_net_shapes():
    net = DeconvNet()
    x = torch.randn(4, 3, 32, 32)
    latents = net.encode(x)
    assert latents.z1.shape == (4, 6, 14, 14)
    assert latents.z2.shape == (4, 16, 5, 5)
    logits, x_hat = net(x)
    assert logits.shape == (4, 10) and x_hat.shape == (4, 3, 32, 32)
    assert net.decode(latents, 1).shape == (4, 3, 32, 32)
    assert net.decode(latents, 2, tied=True).shape == (4, 3, 32, 32)
    assert torch.equal(net.decode(latents, 2), x_hat)


def test_unpooling_puts_each_maximum_back_at_its_argmax():
    x = torch.tensor([[1., 5., 0., 2.],
                      [3., 4., 9., 1.],
                      [0., 0., 7., 8.],
                      [6., 2., 3., 8.5]]).view(1, 1, 4, 4)
    net = DeconvNet()
    pooled, indices = net.pool(x)
    assert pooled.flatten().tolist() == [5., 9., 6., 8.5]
    restored = net.unpool(pooled, indices, output_size=(4, 4))
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


def test_encoder_and_decoder_parameters_partition_the_model():
    net = DeconvNet()
    assert (len(net.encoder_and_head_parameters()) + len(net.decoder_parameters())
            == len(list(net.parameters())))


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

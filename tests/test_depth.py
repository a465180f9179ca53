"""The deeper network of the same kind: the tutorial's net untouched by the BatchNorm flag, the
deep preset's shapes, and BatchNorm folded into the convolutions without changing the logits."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import TutorialsOwnNet
from models import ARCHITECTURES, Architecture, DeconvNet, TutorialNet, fold_batchnorm
from study.core.common import UsageError
from study.training.checkpoints import check_state_dict


def test_the_tutorial_net_is_the_tutorials_bit_for_bit_with_the_same_seed():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    theirs = TutorialsOwnNet()
    torch.manual_seed(0)
    ours = TutorialNet(ARCHITECTURES["tutorial"])
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 theirs.state_dict().values()))
    assert torch.equal(ours(x), theirs(x))
    assert "batchnorm" not in ARCHITECTURES["tutorial"].describe()  # metrics files unchanged


def test_the_tutorial_deconvnet_is_the_tutorials_net_plus_a_mirror_bit_for_bit():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    theirs = TutorialsOwnNet()
    deconv2, deconv1 = nn.ConvTranspose2d(16, 6, 5), nn.ConvTranspose2d(6, 3, 5)
    torch.manual_seed(0)
    ours = DeconvNet(ARCHITECTURES["tutorial"])
    assert list(ours.state_dict()) == list(theirs.state_dict()) + [
        "deconv2.weight", "deconv2.bias", "deconv1.weight", "deconv1.bias"]
    assert torch.equal(ours.deconv2.weight, deconv2.weight)
    assert torch.equal(ours.deconv1.bias, deconv1.bias)
    logits, x_hat = ours(x)
    assert torch.equal(logits, theirs(x))
    h1, s1 = F.max_pool2d(F.relu(theirs.conv1(x)), 2, 2, return_indices=True)
    h2, s2 = F.max_pool2d(F.relu(theirs.conv2(h1)), 2, 2, return_indices=True)
    back = deconv2(F.relu(F.max_unpool2d(h2, s2, 2, 2, output_size=(10, 10))))
    back = deconv1(F.relu(F.max_unpool2d(back, s1, 2, 2, output_size=(28, 28))))
    assert torch.equal(x_hat, back)


def test_deep4_has_four_padded_stages_and_a_linear_head():
    arch = ARCHITECTURES["deep4"]
    assert [stage.size for stage in arch.layers] == [16, 8, 4, 2]  # 32 / 2^k: padding 1 keeps size
    assert [stage.channels for stage in arch.layers] == [32, 64, 128, 256]
    assert arch.widths == (256 * 2 * 2, 10)
    # receptive fields by the recursion r_k = r_{k-1} + (3 - 1) s_{k-1} + (2 - 1) s_{k-1}
    assert [stage.receptive_field for stage in arch.layers] == [4, 10, 22, 46]
    net = DeconvNet(arch)
    assert [d.padding for d in net.deconvs()] == [(1, 1)] * 4
    logits, x_hat = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and x_hat.shape == (2, 3, 32, 32)
    assert Architecture.from_description(arch.describe()) == arch


def trained_statistics(net: TutorialNet) -> TutorialNet:
    """BatchNorm with learned-looking affine weights and running statistics far from 0 and 1."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for stage in net.arch.layers:
            bn = getattr(net, f"bn{stage.index}")
            bn.weight.copy_(torch.rand(stage.channels, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(stage.channels, generator=generator))
        net.train()
        for _ in range(3):
            net(3 * torch.randn(16, 3, 32, 32, generator=generator) + 1)
    return net.eval()


@pytest.mark.parametrize("cls", [TutorialNet, DeconvNet])
def test_folding_batchnorm_keeps_the_logits_and_leaves_a_plain_network(cls):
    torch.manual_seed(0)
    net = trained_statistics(cls(ARCHITECTURES["deep4"]))
    folded = fold_batchnorm(net)
    assert not folded.arch.batchnorm and not any(k.startswith("bn") for k in folded.state_dict())
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ours, theirs = folded(x), net(x)
        if cls is DeconvNet:
            (ours, ours_rec), (theirs, theirs_rec) = ours, theirs
            torch.testing.assert_close(ours_rec, theirs_rec, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        # not an identity in disguise: the convolutions changed, and train mode would differ
        assert not torch.allclose(folded.conv2.weight, net.conv2.weight)
        net.train()
        assert not torch.allclose(folded(x)[0] if cls is DeconvNet else folded(x),
                                  net(x)[0] if cls is DeconvNet else net(x), atol=1e-3)


def test_a_batchnorm_state_dict_is_all_float_weights_and_reloads_without_metadata():
    torch.manual_seed(0)
    net = trained_statistics(DeconvNet(ARCHITECTURES["deep4"]))
    state = {k: v.clone() for k, v in net.state_dict().items()}  # a plain dict: no _metadata
    check_state_dict(state, "deep4.pth", "checkpoint")  # no integer step counter in it
    again = DeconvNet(ARCHITECTURES["deep4"])
    again.load_state_dict(state)
    assert torch.equal(again.bn3.running_var, net.bn3.running_var)


def test_the_tied_deconvnet_of_a_batchnorm_net_is_refused():
    net = DeconvNet(ARCHITECTURES["deep4"]).eval()
    latents = net.encode(torch.randn(1, 3, 32, 32))
    with pytest.raises(UsageError, match="fold_batchnorm"):
        net.decode(latents, 2, tied=True)

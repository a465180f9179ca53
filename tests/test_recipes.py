"""The fast recipe (study/training/recipes.py): its schedule against torch's OneCycleLR, its defaults
beside the tutorial's (which stay the default), its flips, and a resumed run that follows an
unbroken one."""
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import train_classifier
import train_deconv
from models import Architecture, TutorialNet
from study.training.loop import TrainingRun, fit
from study.training.recipes import FAST_DEFAULTS, FAST_SHIFT, FastRecipe, fast_sgd, one_cycle_lr


@pytest.mark.parametrize("total", [7, 100, 391])
def test_the_schedule_is_torchs_one_cycle(total):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)
    for step in range(total):
        assert one_cycle_lr(step, total, 0.1) == pytest.approx(optimizer.param_groups[0]["lr"],
                                                               rel=1e-12, abs=1e-15)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("script", [train_classifier, train_deconv])
def test_the_tutorial_protocol_stays_the_default_and_fast_fills_only_what_is_not_given(script):
    tutorial = script.parse_args([])
    assert (tutorial.recipe, tutorial.batch_size, tutorial.lr, tutorial.epochs) == ("tutorial", 4, 0.001, 2)
    assert "recipe" not in script.run_settings(tutorial, "hash")  # the settings of old runs
    fast = script.parse_args(["--recipe", "fast"])
    assert (fast.batch_size, fast.lr, fast.epochs) == (FAST_DEFAULTS["batch_size"],
                                                       FAST_DEFAULTS["lr"], FAST_DEFAULTS["epochs"])
    given = script.parse_args(["--recipe", "fast", "--batch-size", "128", "--epochs", "1"])
    assert (given.batch_size, given.lr, given.epochs) == (128, FAST_DEFAULTS["lr"], 1)
    assert script.run_settings(given, "hash")["recipe"] == "fast"
    assert script.parse_args([]).batch_size == 4  # the parser kept the tutorial's defaults


def test_the_fast_optimiser_is_nesterov_sgd_with_weight_decay():
    group = fast_sgd([torch.nn.Parameter(torch.zeros(1))], 0.1, 0.9).param_groups[0]
    assert group["nesterov"] and group["weight_decay"] > 0 and group["momentum"] == 0.9


def test_flips_mirror_the_images_drawn_for_the_step_and_depend_on_seed_and_step_only():
    recipe = FastRecipe(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 0.1, 10, seed=3)
    x = torch.randn(64, 3, 4, 4)
    recipe.before_step(5)
    mask = recipe.flips(64)
    with mock.patch("study.training.recipes.FAST_SHIFT", 0):  # flips alone
        seen = recipe.augment(x)
    assert torch.equal(seen[mask], x[mask].flip(3))
    assert torch.equal(seen[~mask], x[~mask])
    assert 16 < int(mask.sum()) < 48  # about half: 64 fair coins
    again = FastRecipe(recipe.optimizer, 0.1, 10, seed=3)  # the same (seed, step): the same draw
    again.before_step(5)
    assert torch.equal(again.flips(64), mask)
    again.before_step(6)
    assert not torch.equal(again.flips(64), mask)


def test_translations_move_each_image_by_its_drawn_shift_with_reflected_borders():
    recipe = FastRecipe(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 0.1, 10, seed=1)
    x = torch.arange(40 * 3 * 8 * 8, dtype=torch.float32).view(40, 3, 8, 8)
    recipe.before_step(2)
    flips, shifts = recipe.flips(40), recipe.shifts(40)
    out = recipe.augment(x)
    assert out.shape == x.shape
    assert shifts.abs().max() <= FAST_SHIFT and len({tuple(s) for s in shifts.tolist()}) > 5

    def reflect(i: int, n: int) -> int:  # numpy's "reflect": -1 -> 1, n -> n - 2
        return -i if i < 0 else 2 * (n - 1) - i if i >= n else i
    for i, (down, right) in enumerate(shifts.tolist()):
        source = x[i].flip(2) if flips[i] else x[i]
        for r in range(8):
            for c in range(8):
                expected = source[:, reflect(r + down, 8), reflect(c + right, 8)]
                assert torch.equal(out[i, :, r, c], expected)
    # the loss sees the same augmented batch, in channels-last layout
    seen = {}
    recipe.loss(lambda model, images, y: (seen.setdefault("x", images).sum(), None))(None, x, None)
    assert torch.equal(seen["x"], out) and seen["x"].is_contiguous(memory_format=torch.channels_last)


def _tiny_run(tmp_path, epochs: int, resume: bool = False, total_epochs: int = 2):
    tmp_path.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (48,), generator=generator)
    torch.manual_seed(0)
    net = TutorialNet(Architecture(channels=(4,), hidden=(), batchnorm=True))
    optimizer = fast_sgd(net.parameters(), 0.1, 0.9)
    steps = total_epochs * math.ceil(48 / 16)
    recipe = FastRecipe(optimizer, 0.1, steps, seed=0)
    seen = []

    def before_step(step: int) -> None:
        seen.append(step)
        recipe.before_step(step)

    def loss_fn(model, x, y):
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        return loss, loss.detach().reshape(1)
    fit(net, recipe.loss(loss_fn), [optimizer], images, labels, TrainingRun(
        part_names=("loss",), epochs=epochs, batch_size=16, seed=0, log_every=100,
        settings={"recipe": "fast"}, state_path=tmp_path / "state.pth", resume=resume, quiet=True,
        before_step=before_step))
    return net, seen, optimizer


def test_the_schedule_counts_steps_over_the_run_and_a_resumed_run_follows_an_unbroken_one(tmp_path):
    straight, seen, optimizer = _tiny_run(tmp_path / "a", 2)
    assert seen == list(range(6))  # global steps, across the epoch boundary
    assert optimizer.param_groups[0]["lr"] == one_cycle_lr(5, 6, 0.1)
    _tiny_run(tmp_path / "b", 1)
    resumed, seen, _ = _tiny_run(tmp_path / "b", 2, resume=True)
    assert seen == [3, 4, 5]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name  # BatchNorm's running statistics included


@pytest.mark.slow
def test_the_scripts_train_deep4_with_the_fast_recipe_and_save_it_folded(tmp_path, tiny_cifar,
                                                                         script_env):
    """Both scripts, end to end on the tiny data: the checkpoint is a plain (folded) network
    that the metrics file beside it describes, and it loads as such."""
    from conftest import run_script
    from study.core.readers import read_json
    from study.training.checkpoints import architecture_beside, load_model

    common = ["--data-dir", tiny_cifar, "--arch", "deep4", "--recipe", "fast", "--epochs", "1",
              "--batch-size", "32", "--quiet"]
    task1 = run_script("train_classifier.py", *common, "--out", tmp_path / "t1", env=script_env)
    assert task1.returncode == 0, task1.stderr
    task2 = run_script("train_deconv.py", *common, "--out", tmp_path / "t2",
                       "--task1-metrics", tmp_path / "t1" / "metrics.json", env=script_env)
    assert task2.returncode == 0, task2.stderr
    for folder, name, kind in (("t1", "cifar_net.pth", "TutorialNet"),
                               ("t2", "deconv_net.pth", "DeconvNet")):
        metrics = read_json(tmp_path / folder / "metrics.json", "metrics", "rerun")
        assert metrics["config"]["recipe"] == "fast" and metrics["config"]["batchnorm_folded"]
        arch = architecture_beside(tmp_path / folder / name)
        assert not arch.batchnorm and arch.channels == (32, 64, 128, 256) and arch.padding == 1
        model = load_model(tmp_path / folder / name, kind, "checkpoint")
        assert not any(k.startswith("bn") for k in model.state_dict())


def test_the_recipe_computes_in_bfloat16_but_keeps_float32_weights_and_gradients():
    """Mixed precision: inside the recipe's loss a convolution gives bfloat16; the parameters,
    their gradients and the loss the optimiser sees stay float32."""
    torch.manual_seed(0)
    net = TutorialNet(Architecture(channels=(4,), hidden=(), batchnorm=True))
    recipe = FastRecipe(fast_sgd(net.parameters(), 0.1, 0.9), 0.1, 10, seed=0)
    recipe.before_step(0)
    seen = {}

    def loss_fn(model, x, y):
        seen["conv"] = model.conv1(x).dtype
        loss = F.cross_entropy(model(x), y)
        return loss, loss.detach().reshape(1)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss, _ = recipe.loss(loss_fn)(net, x, y)
    loss.backward()
    assert seen["conv"] == torch.bfloat16
    assert loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())
    # the same step in float32 differs only by bfloat16's rounding (8 bits of mantissa)
    exact = F.cross_entropy(net(recipe.augment(x)), y)
    assert abs(loss.item() - exact.item()) < 0.05 * exact.item() and loss.item() != exact.item()


def test_identity_initialised_convolutions_pass_their_input_on():
    """benchmarks.bench_recipe's identity variant: a 3x3 convolution (padding 1) with at least as
    many outputs as inputs returns its input in its first channels; conv1 (3 -> 32 at the
    input, not square) too, its first 3 channels the image itself."""
    from benchmarks.bench_recipe import identity_init
    from models import ARCHITECTURES, TutorialNet

    torch.manual_seed(0)
    net = TutorialNet(ARCHITECTURES["deep4"])
    identity_init(net)
    for conv in net.convs():
        c = conv.in_channels
        x = torch.randn(2, c, 8, 8)
        with torch.no_grad():
            y = conv(x)
        assert torch.allclose(y[:, :c], x, atol=1e-6)
        assert not torch.allclose(y[:, c:2 * c], x[:, :min(c, y.shape[1] - c)], atol=1e-3)


def test_the_batchnorm_group_has_no_weight_decay_and_every_other_parameter_keeps_it():
    from benchmarks.bench_recipe import optimizer_for
    from models import ARCHITECTURES, BatchNorm, TutorialNet

    net = TutorialNet(ARCHITECTURES["deep4"])
    plain, raised = optimizer_for(net, "plain", 0.1, 5), optimizer_for(net, "bn-lr", 0.1, 5)
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] > 0
    norms = {id(p) for m in net.modules() if isinstance(m, BatchNorm) for p in m.parameters()}
    assert len(norms) == 2 * 4  # a scale and a shift per stage
    assert {id(p) for p in raised.param_groups[1]["params"]} == norms
    assert raised.param_groups[1]["weight_decay"] == 0 and raised.param_groups[0]["weight_decay"] > 0
    assert len(raised.param_groups[0]["params"]) + len(norms) == len(list(net.parameters()))

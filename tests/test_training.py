"""training.py and sweep.py's runner: the step, the loop, statistics, parallel runs."""
import sys

import pytest
import torch
import torch.nn.functional as F

from data import normalize
from models import DeconvNet, TutorialNet
from study.runs.summary import seed_spread
from study.training.loop import StepRunner, TrainingRun, mcnemar, train_epoch
from sweep import NOT_STARTED, Run, plan, run_parallel
from train_classifier import cross_entropy
from train_deconv import eq1


def synthetic(n=600, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (n,), generator=generator)


def plain_tutorial_loop(net, images, labels, steps, seed):
    """The tutorial's loop, written out: zero_grad, forward, loss, backward, step."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, foreach=True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    losses = []
    for i in range(steps):
        index = order[4 * i:4 * i + 4]
        optimizer.zero_grad()
        loss = F.cross_entropy(net(normalize(images[index])), labels[index])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eager", "static"])
def test_the_step_runner_is_bit_identical_to_the_plain_loop(mode):
    images, labels = synthetic()
    torch.manual_seed(0)
    reference = TutorialNet()
    expected = plain_tutorial_loop(reference, images, labels, 150, seed=3)

    torch.manual_seed(0)
    net = TutorialNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, foreach=True)
    runner = StepRunner(net, cross_entropy, [optimizer], 4, torch.device("cpu"), mode)
    run = TrainingRun(epochs=1, batch_size=4, seed=3, log_every=50, settings={},
                      part_names=("loss",), quiet=True)
    log, means = train_epoch(runner, images, labels, run, torch.Generator().manual_seed(3), 1)
    for a, b in zip(reference.parameters(), net.parameters()):
        assert torch.equal(a, b)
    assert [row["loss"] for row in log] == [round(sum(expected[k:k + 50]) / 50, 4)
                                           for k in (0, 50, 100)]
    assert means["loss"] == round(sum(expected) / 150, 4)


@pytest.mark.slow
def test_static_buffers_give_task2_the_same_weights_as_eager():
    images, labels = synthetic(n=90)  # 22 full batches and a last batch of 2, run eagerly
    results = []
    for mode in ("eager", "static"):
        torch.manual_seed(0)
        net = DeconvNet()
        optimizers = [torch.optim.SGD(net.encoder_and_head_parameters(), lr=0.001, momentum=0.9),
                      torch.optim.Adam(net.decoder_parameters(), lr=1e-3)]
        runner = StepRunner(net, eq1(0.01), optimizers, 4, torch.device("cpu"), mode)
        run = TrainingRun(epochs=1, batch_size=4, seed=0, log_every=10, settings={},
                          part_names=("ce", "rec"), quiet=True)
        train_epoch(runner, images, labels, run, torch.Generator().manual_seed(0), 1)
        results.append(list(net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_eq1_loss_parts_are_ce_and_rec_written_out():
    """Eq. (1) by hand: CE = mean of -log softmax at the label; L_rec = mean over images of
    (1/3) sum over R, G, B of the squared Frobenius norm, as explicit loops."""
    torch.manual_seed(0)
    net, x, y = DeconvNet(), torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, parts = eq1(0.5)(net, x, y)
    with torch.no_grad():
        logits, x_hat = net(x)
        ce = sum(-(logits[n, y[n]] - logits[n].exp().sum().log()) for n in range(4)) / 4
        rec = sum(sum(((x_hat[n, c] - x[n, c]) ** 2).sum() for c in range(3)) / 3
                  for n in range(4)) / 4
    assert parts[0].item() == pytest.approx(ce.item(), rel=1e-5)
    assert parts[1].item() == pytest.approx(rec.item(), rel=1e-5)
    assert loss.item() == pytest.approx(ce.item() + 0.5 * rec.item(), rel=1e-5)


def test_graph_mode_needs_cuda():
    net = TutorialNet()
    with pytest.raises(ValueError, match="CUDA"):
        StepRunner(net, cross_entropy, [torch.optim.SGD(net.parameters(), lr=0.1)], 4,
                   torch.device("cpu"), "graph")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_follows_the_eager_run_on_the_gpu():
    images, labels = synthetic(n=82)  # 20 full batches (replayed) and one of 2 (eager)
    images, labels = images.cuda(), labels.cuda()
    results = []
    for mode in ("eager", "graph"):
        torch.manual_seed(0)
        net = DeconvNet().cuda()
        optimizers = [torch.optim.SGD(net.encoder_and_head_parameters(), lr=0.001, momentum=0.9),
                      torch.optim.Adam(net.decoder_parameters(), lr=1e-3, capturable=True)]
        runner = StepRunner(net, eq1(0.01), optimizers, 4, torch.device("cuda"), mode)
        run = TrainingRun(epochs=1, batch_size=4, seed=0, log_every=10, settings={},
                          part_names=("ce", "rec"), quiet=True)
        _, means = train_epoch(runner, images, labels, run, torch.Generator().manual_seed(0), 1)
        results.append((means, [p.detach().clone() for p in net.parameters()]))
    (eager_means, eager_params), (graph_means, graph_params) = results
    assert eager_means["ce"] == pytest.approx(graph_means["ce"], rel=1e-3)
    for a, b in zip(eager_params, graph_params):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)


def test_mcnemar_counts_disagreements_and_gives_the_exact_p_value():
    first = [True] * 10 + [False] * 2 + [True] * 5
    second = [False] * 10 + [True] * 2 + [True] * 5
    result = mcnemar(first, second)
    assert result["only_first_correct"] == 10 and result["only_second_correct"] == 2
    assert result["p_value"] == pytest.approx(2 * sum([1, 12, 66]) / 2 ** 12, abs=1e-4)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_mean_sd_uses_the_sample_standard_deviation():
    assert seed_spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert seed_spread([5.0])["sd"] is None


def test_the_plan_has_every_seed_and_lambda_once(tmp_path):
    runs = plan([0, 1, 2], [0.0, 1e-4, 1e-2], tmp_path, ["--quiet"])
    names = [r.name for r in runs]
    assert names == ["task1 seed 0", "task1 seed 1", "task1 seed 2", "task2 seed 0",
                     "task2 seed 1", "task2 seed 2", "task2 lambda 0 seed 0",
                     "task2 lambda 0.0001 seed 0"]
    assert runs[0].out == tmp_path / "task1" and runs[3].out == tmp_path / "task2"
    assert runs[4].after == ("task1 seed 1",)
    assert len({r.out for r in runs}) == len(runs)
    with_task3 = plan([0, 1], [1e-2], tmp_path, ["--quiet"], task3=["--quiet"])
    assert [r.name for r in with_task3][:5] == ["task1 seed 0", "task1 seed 1", "task2 seed 0",
                                                "task2 permuted labels seed 0", "task3"]
    permuted, task3 = with_task3[3], with_task3[4]
    assert "--permute-labels" in permuted.command and permuted.after == ()
    assert task3.after == ("task2 seed 0", "task2 permuted labels seed 0")
    assert str(tmp_path / "task2" / "deconv_net.pth") in task3.command
    assert str(permuted.out / "deconv_net.pth") in task3.command


@pytest.mark.slow
def test_the_runner_keeps_order_limits_and_reports_a_failure(tmp_path):
    stamp = tmp_path / "order.txt"

    def step(name, code=0, sleep=0.0, after=()):
        script = (f"import time; time.sleep({sleep}); open({str(stamp)!r}, 'a').write({name!r} + '\\n'); "
                  f"raise SystemExit({code})")
        return Run(name, [sys.executable, "-c", script], tmp_path / name, after)
    runs = [step("slow", sleep=0.5), step("fails", code=3), step("late", after=("slow",)),
            step("after-failure", after=("fails",))]
    codes = run_parallel(runs, jobs=2, log_dir=tmp_path / "logs", quiet=True)
    # a run waiting for a failed one is not started: it would read stale results
    assert codes == {"slow": 0, "fails": 3, "late": 0, "after-failure": NOT_STARTED}
    order = stamp.read_text().split()
    assert order.index("late") > order.index("slow")  # waited for the run it depends on
    assert (tmp_path / "logs" / "fails.log").is_file()


def test_task2_training_follows_a_hand_written_reference_loop():
    """Eq. (1) with two optimisers, written out here: SGD on encoder and head, Adam on the decoder.

    Every parameter after two steps is compared, so a step that forgets to zero one optimiser's
    gradients (the decoder's would then accumulate over steps) fails here.
    """
    images, labels = synthetic(n=8)
    torch.manual_seed(0)
    reference = DeconvNet()
    torch.manual_seed(0)
    net = DeconvNet()
    decoder_names = ("deconv1.", "deconv2.")
    encoder = [p for n, p in reference.named_parameters() if not n.startswith(decoder_names)]
    decoder = [p for n, p in reference.named_parameters() if n.startswith(decoder_names)]
    sgd = torch.optim.SGD(encoder, lr=0.001, momentum=0.9)
    adam = torch.optim.Adam(decoder, lr=1e-3)
    lam = 0.01
    for step in range(2):
        x = images[4 * step:4 * step + 4].float() / 255 * 2 - 1
        y = labels[4 * step:4 * step + 4]
        for p in reference.parameters():
            p.grad = None
        logits, x_hat = reference(x)
        rec = ((x_hat - x) ** 2).sum(dim=(1, 2, 3)).mean() / 3  # (1/3) sum_c ||.||_F^2, batch mean
        (F.cross_entropy(logits, y) + lam * rec).backward()
        sgd.step()
        adam.step()

    optimizers = [torch.optim.SGD(net.encoder_and_head_parameters(), lr=0.001, momentum=0.9),
                  torch.optim.Adam(net.decoder_parameters(), lr=1e-3)]
    runner = StepRunner(net, eq1(lam), optimizers, 4, torch.device("cpu"), "eager")
    for step in range(2):
        runner(images[4 * step:4 * step + 4], labels[4 * step:4 * step + 4])
    for (name, a), b in zip(reference.named_parameters(), net.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name

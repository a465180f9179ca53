"""What the benchmarks share: a model's training steps per second through training.train_epoch."""
import time

import torch

from study.training.loop import StepRunner, TrainingRun, train_epoch

EPOCH_STEPS = 12500  # 50,000 images at batch 4


def steps_per_second(model: torch.nn.Module, loss_fn, optimizers, data, steps: int,
                     part_names: tuple[str, ...], mode: str = "eager") -> float:
    """Steps/s of the real training loop over `steps` batches of 4, after 100 warm-up steps."""
    device = data.train_labels.device
    runner = StepRunner(model, loss_fn, optimizers, 4, device, mode)
    chosen = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(0))

    def epoch(n: int) -> None:
        index = chosen[:n].to(device)
        run = TrainingRun(epochs=1, batch_size=4, seed=0, log_every=10 ** 9, settings={},
                          part_names=part_names, quiet=True)
        train_epoch(runner, data.train_images[index], data.train_labels[index], run,
                    torch.Generator().manual_seed(0), 1)
    epoch(400)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    epoch(4 * steps)  # the loop reads the losses at its end, which waits for the GPU
    return steps / (time.perf_counter() - started)


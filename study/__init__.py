"""The study's shared code, below the commands at the top of the repository.

Five sub-packages, each importing only from those listed before it (and `models.py` and
`data.py` only from `core`):

- `core`: errors and command-line helpers, file writing and validated reading, the study's
  settings, the outputs' layout, CIFAR-10's image files and cache;
- `training`: the training loop, its resumable state, checkpoints and recipes;
- `analysis`: what Task 3 and the probes measure (decoders, rules, nulls, projections);
- `reporting`: tables, figures, the report's facts and checks, the explorer page;
- `runs`: the sweep's plan, run folders and identities, local and Slurm execution, summaries.
"""

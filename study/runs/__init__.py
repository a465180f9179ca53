"""Runs as the sweep and `make` see them: the plan of runs (`plan`), output folders with their
lock and incomplete mark (`folders`), what makes two runs the same (`identity`), running them
as local processes or Slurm jobs (`cluster`, `slurm_watch`), and the sweep's summary
(`summary`).
"""

"""Training as Task 1 and Task 2 share it: one loop over `TrainingRun` settings (`loop`), the
state that lets an interrupted run resume to the same numbers (`state`), checkpoints saved and
read back with their checks (`checkpoints`), and the optional faster recipes (`recipes`).
"""

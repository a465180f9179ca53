"""What every other part stands on: `UsageError` and the command-line helpers (`common`), files
written whole and read back with validation (`files`, `readers`), the study's settings and
bounds (`settings`), where every output lives (`layout`), words for counts (`text`), and
CIFAR-10's image folders and decoded cache (`image_files`, `data_cache`). Imports nothing else
of the study, so `models.py` and `data.py` can import it.
"""

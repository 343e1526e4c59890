"""The Lightning trainer and its run folders (docs/architecture.md §trainer).

``train`` is the entry point (``tools/fit.py``); ``module`` the LightningModule around the
training update; ``data`` the collector and replay feeder; ``callbacks`` checkpoints,
evaluation, graceful stop and the run summary; ``checkpoints``, ``runfolder`` and ``layout``
the run folder itself. Importing the package loads nothing.
"""

"""Stage 3, train: from a dataset folder to a complete model bundle.

Owns the run's settings (:mod:`~imgkit.train.settings`), the single ``fit`` with its
epoch data and checkpoint callback (:mod:`~imgkit.train.loop`,
:mod:`~imgkit.train.checkpoints`), the recipe (losses, schedules, class weights,
mixed precision), augmentation, scoring, calibration and thresholds, segmentation
training, curves and ``tune``. It may import data and models, never infer or evaluate.
"""

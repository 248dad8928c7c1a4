"""Stage 4, infer: a bundle applied to new images.

Owns ``predict``, ``tta`` and ``segment``: one input plan (:mod:`imgkit.infer.plan`),
one pipeline that decodes and runs it here or on Ray (:mod:`imgkit.infer.engine`,
:mod:`imgkit.infer.run`), streaming batches in constant memory, temperature and
threshold applied as the bundle says. It may import data, models and train
(calibration, thresholds), never evaluate.
"""

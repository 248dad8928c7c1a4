"""Stage 4, infer: a bundle applied to new images.

Owns ``predict``, ``tta`` and ``segment``: input listing, streaming batches in constant
memory, temperature and threshold applied as the bundle says. It may import data,
models and train (calibration, thresholds), never evaluate.
"""

"""Stage 5, export: a bundle's model in other formats, each checked against Keras.

Owns ``imgkit export`` (ONNX, SavedModel, TFLite: :mod:`~imgkit.export.formats` writes
and runs them, :mod:`~imgkit.export.parity` measures them against Keras on real
images, :mod:`~imgkit.export.exporter` puts them in the bundle) and ``imgkit info``
(:mod:`~imgkit.export.info`). It sits on infer (the images a bundle expects, its
probabilities, the ONNX Runtime wrapper) and may import any stage below it, never
evaluate. TensorFlow is imported here only inside the functions that need it.
"""

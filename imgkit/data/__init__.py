"""Stage 1, data: everything between the user's files and uint8 arrays.

Owns dataset folders (manifest, splits, the memory-mapped decode cache), image and
mask decoding, grouping, ``prep`` and its input readers (``sources/``). It imports
only the shared top-level modules (errors, fileio); never models, train, infer or
evaluate. No TensorFlow here.
"""

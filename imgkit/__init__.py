"""imgkit: single-purpose commands for training and using image models from shell scripts.

The library lives in plain modules (no click, no printing); ``imgkit.commands`` holds
the thin click layer. TensorFlow/Keras is imported only inside functions that need it.
"""

__version__ = "0.1.0"

"""Stage 6, evaluate: predictions scored, compared and handed in.

Owns classification metrics, mask metrics, figures, comparing runs and Kaggle
submissions. The top of the pipeline: it may import any lower stage.
"""

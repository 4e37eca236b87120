"""`trainer distill`: one small 3-class student distilled from the shipped ensemble.

faces.py (annotated, detector-framed and close-up faces; folds) -> views.py (a fixed set of views
per face, read once by the teacher) -> train.py (head on cached features, then fine-tuning) ->
cv.py (k-fold cross-validation on held-in photos) -> run.py (the run folder) with card.py (its
texts); command.py is the command line, compare.py the settings comparison.
"""

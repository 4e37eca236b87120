"""`trainer fit`: the model, cached features, the two phases (frozen base, then fine-tuning),
resume, evaluation, reports and the artifacts written.
"""

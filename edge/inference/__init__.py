"""One frame in, labelled faces out: the classifier, the pipeline (detect, crop, classify, reuse
labels of the same face), the look of a face, detection ahead on a thread, and the evaluation on
annotated photos.
"""

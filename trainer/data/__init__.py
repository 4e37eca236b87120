"""Training data: sources and their classes, near-duplicate groups, the split manifest, images
and pixels, augmentation, and streaming from disk when the data outgrows memory.
"""

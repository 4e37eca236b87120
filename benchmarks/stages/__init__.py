"""One benchmark per stage: accuracy, latency, sizes, MACs and the roofline, the 3-class study,
detection with its calibration and fine-tuning, end to end, training and scaling.
"""

"""maskedge trainer: turns a labelled photo folder into a verified MobileNetV2 face-mask model."""

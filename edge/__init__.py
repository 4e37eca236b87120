"""maskedge edge runtime: runs a .tflite face-mask model on camera frames without TensorFlow."""

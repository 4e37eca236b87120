"""maskedge converters: Keras model to float32, float16, dynamic-range and int8 TFLite."""

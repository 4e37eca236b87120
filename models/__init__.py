"""maskedge's shipped model files, installed as package data (`maskedge_models`).

`face_mask_2c_int8.tflite` (the default classifier, MODEL_CARD.md) and the default face detector:
`yunet.tflite` and `yunet_calibration.json` (DETECTOR_CARD.md, LICENSE-yunet.txt).
`edge.core.assets` finds them here; nothing is downloaded.
"""

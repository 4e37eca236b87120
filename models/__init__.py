"""maskedge's shipped model files, installed as package data (`maskedge_models`).

`face_mask_3c_student_int8.tflite` (the default classifier: with_mask, without_mask,
mask_weared_incorrect; MODEL_CARD_3c_student.md), `face_mask_2c_int8.tflite` (2 classes,
MODEL_CARD.md), `face_mask_3c_int8.tflite` (the 3-class ensemble, the student's teacher,
MODEL_CARD_3c.md) and the face detectors: `yunet_masked.tflite` (the default) and `yunet.tflite`
with their settings files (DETECTOR_CARD.md, LICENSE-yunet.txt).
`edge.core.assets` finds them here; nothing is downloaded.
"""

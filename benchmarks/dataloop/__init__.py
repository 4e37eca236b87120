"""The data loop's benchmark (issue 32, item 4): what one round of collect -> label -> retrain ->
convert gains on photos kept out of the loop.

    python -m benchmarks.dataloop            # benchmarks/results/dataloop.json (resumable)
    python -m benchmarks.dataloop --quick    # smoke run under benchmarks/work/quick/

The new door: the shipped 2-class model (`models/face_mask_2c_int8.tflite`) was trained on
face-mask-2c close-ups only; face-mask-ilc-dev is web photos of another origin, which it never
saw. What is simulated:

- the camera: a 640x480 video of the **held-in** ilc-dev photos, those in neither list of
  `benchmarks/holdout/` (not the held-out test photos, nor the validation photos on which the
  default detector's threshold was chosen), made by the tracking benchmark's seeded `held` clip
  (each photo held 12 frames with a little pan, zoom and sensor noise; clip.py);
- the device: the real `edge run --source VIDEO --model models/face_mask_2c_int8.tflite
  --collect DIR --collect-max 200`, as a child process;
- the person: each kept face is labelled with the VOC class of the annotated face its box
  overlaps most in that frame (IoU >= 0.5), through the real `edge label DIR --set FILE=LABEL`;
  mask_weared_incorrect faces and faces that match no annotation are skipped (annotator.py);
- the retraining: the shipped model's own recipe (models/MODEL_CARD.md, "Reproduce": `trainer
  fit face-mask-2c --weights mobilenet_v2... --input-size 128`, defaults otherwise) run twice,
  "before" on face-mask-2c alone and "after" on face-mask-2c + DIR/labelled, each converted by
  `convert MODEL.h5 --quantize int8` (its accuracy gate must pass).

What is held out: the ilc-dev held-out photos (`benchmarks/holdout/face-mask-ilc-dev-test.txt`),
never played to the collector nor trained on, scored **once** at the end by `edge evaluate` (the
default detector finds the faces, IoU 0.5 to the annotations; the with_mask and without_mask
faces count): accuracy, per-class F1 and the number of faces, for before, after and the shipped
model. Nothing is tuned after seeing them: the budget, the labelling rule and the recipe are
constants here, and a rerun reuses the three evaluation files instead of scoring again.
"""

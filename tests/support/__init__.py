"""What only the tests use: stand-ins for cameras and receivers, builders of test inputs, and the
reliability case list. Imported as `support.<module>` (tests/ is on sys.path: pytest puts the
folder of tests/conftest.py there); the fixtures and the data paths stay in tests/conftest.py.

- cameras.py: `FastCamera` (a live source) and `ScriptedCapture` (a cv2.VideoCapture that is
  lost and comes back on a script);
- receivers.py: `Receiver` (an HTTP server recording webhook POSTs), `MqttWatcher` (a paho
  client recording what a broker delivers) and `mosquitto_or_skip`; the broker itself is
  benchmarks.reliability.tools.Broker, which the reliability benchmark runs too;
- builders.py: `make_tiny_run` (a run folder in seconds), `make_messy_folder` (real photos and
  every kind of bad file), `real_jpegs`, `save`;
- reliability_cases.py: the fault and bad-input cases that benchmarks/RELIABILITY.md lists.
"""

"""Face detectors behind one protocol, `detect(rgb) -> list[Face]`: YuNet, BlazeFace and the
choice between them (detectors.py).
"""

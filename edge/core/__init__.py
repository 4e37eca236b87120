"""What every stage shares and the device needs too: the model contract and its metadata,
atomic file writes, the console, label maps, the VOC reader, metrics, image ops, face boxes,
where model files come from and the TFLite interpreter. Imports nothing else of maskedge.
"""

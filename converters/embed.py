"""Put the contract inside a `.tflite` file, as the FlatBuffer's `maskedge_metadata` entry.

A TFLite model's root table has a `metadata` vector of (name, buffer index) pairs. `embed_contract`
unpacks the FlatBuffer with TensorFlow's `flatbuffer_utils`, stores the contract JSON in a buffer
(replacing an earlier maskedge entry if there is one) and packs it again. The edge runtime reads it
back without TensorFlow (`edge.core.tflite_metadata.read_contract`).
"""

from __future__ import annotations

import numpy as np

from edge.core.contract import METADATA_KEY, ModelContract


def embed_contract(tflite: bytes, contract: ModelContract) -> bytes:
    """`tflite` with `contract` embedded as its maskedge metadata entry."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    payload = np.frombuffer(contract.to_json().encode("utf-8"), dtype=np.uint8)
    model.metadata = list(model.metadata or [])
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_KEY:
            model.buffers[entry.buffer].data = payload
            break
    else:
        buffer = schema.BufferT()
        buffer.data = payload
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

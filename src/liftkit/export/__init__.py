"""Ship a run: `lift export RUN_DIR --format hf|onnx [--quantize int8]`.

`exporter` wires it (load the run, measure, write atomically, export.json, model card); `hf`
writes the merged transformers folder; `onnx` traces the model into an ONNX graph and quantizes it.
"""

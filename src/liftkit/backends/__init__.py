"""What runs a loaded classifier: (input ids, attention mask) as int64 numpy arrays -> logits.

`onnx_backend` needs only onnxruntime (an ONNX export predicts where torch is not installed);
`torch_backend` rebuilds a run folder's or an hf export's model in torch, its mergeable adapters
folded into the weights. `liftkit.predict` picks one; both take the same padded batches.
"""

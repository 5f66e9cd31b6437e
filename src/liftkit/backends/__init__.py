"""What runs a loaded classifier: {input name: int64 numpy array} (ids, mask, token type ids) -> logits.

`onnx_backend` needs only onnxruntime (an ONNX export predicts where torch is not installed);
`torch_backend` rebuilds a run folder's or an hf export's model in torch, its mergeable adapters
folded into the weights. `liftkit.predict` picks one; both take the same padded batches.
"""

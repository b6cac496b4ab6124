"""Where and how a model runs: devices and ranks (distributed), precision (amp autocast; the bf16 probe), the
inference back-ends (inference: torch; onnxrt: ONNX Runtime, fp32 and int8) and the measured choice between them
(auto: `--runtime auto`). Nothing here reads data or run folders.
"""

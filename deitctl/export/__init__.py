"""Layer 8: writing a model in other formats (timm safetensors, ONNX, transformers), each parity-checked."""

"""Layer 4: data — datasets through Hugging Face ``datasets``, decoding, the DeiT transforms, samplers, loaders."""

"""Layer 2: moving model files to and from a hub (the Hugging Face Hub or a plain directory).

Transport only: this layer never builds a model. Whoever pulls passes a ``check`` that rebuilds the
model (``deitctl.models.store``), so the hub never learns what a model is.
"""

"""Layer 3: models — the one factory over timm, model directories on disk, and the parser of model references.

``types`` (LoadedModel, DataConfig) depends on nothing; ``factory`` builds; ``inspect`` counts and
looks inside; ``adapt`` fits weights to a new resolution or class count; ``store`` reads and writes
timm's local-dir format; ``pth`` reads legacy state dicts; ``onnx`` runs an exported file; ``refs``
turns any reference a user types into a LoadedModel.
"""

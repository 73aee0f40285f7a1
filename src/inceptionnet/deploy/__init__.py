"""Deployment: graph work before any engine (``fold``), the one output check (``verify``), exported
files (``export``: ONNX / TorchScript with metadata) and the fast inference path (``fast``)."""

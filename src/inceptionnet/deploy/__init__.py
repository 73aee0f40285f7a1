"""Deployment: graph work before any engine (``fold``), the one output check (``verify``), exported
files (``export``: ONNX / TorchScript with metadata), the backends as records (``backends``: one
``Backend`` per engine, ``Candidate`` pairs; ``dtypes``: the one fp32 / bf16 / int8 table), the fast
inference path over them (``fast``), int8 calibration (``quant``), OpenVINO (``openvino``) and the CPU
ceiling probe bench reports (``probe``, with ``fma_peak.c``)."""

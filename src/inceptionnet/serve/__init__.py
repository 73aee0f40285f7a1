"""``inceptionnet serve``: an HTTP inference server (FastAPI + uvicorn) with dynamic batching, and the
explanations its page and ``inceptionnet explain`` draw.

    engine.py    the model, built once: loading (checkpoint / weights / ONNX file), the fast path,
                 decoding uploaded bytes with the project's image reader and transform, limits
    batching.py  the dynamic batcher: one asyncio worker groups queued images into one batch
    explain.py   Grad-CAM (captum's LayerGradCam) and the four-branch energy of an Inception block
                 (forward hooks), as arrays, overlay PNGs and a matplotlib figure
    app.py       the FastAPI app: /v1/predict, /v1/explain, /v1/models, /healthz, /metrics, the page
    static/      the page (plain HTML/JS/CSS, no build step, no CDN), served by the app

Layering: serve/ imports checkpoint, deploy, data, models, fileio, runtime and errors; only
``commands/serve.py`` and ``commands/explain.py`` import it. FastAPI, uvicorn, prometheus_client and
captum are the ``serve`` extra (``pip install 'inceptionnet[serve]'``), imported by these modules only.
"""

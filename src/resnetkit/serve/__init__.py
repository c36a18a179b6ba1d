"""HTTP serving: a FastAPI app with dynamic batching, Grad-CAM explanations and a web page.

``resnetkit serve --checkpoint RUN`` runs it; from Python::

    from resnetkit.serve import ServeConfig, create_app, load_for_serving, serve
    serve(create_app(load_for_serving("runs/NAME"), ServeConfig(max_batch=32)), port=8000)

Needs the ``serve`` extra (``pip install resnetkit[serve]``: fastapi, uvicorn,
python-multipart). Names are imported on first use, so that ``resnetkit --help`` and
:mod:`.config` work without the extra.
"""

from importlib import import_module

_EXPORTS = {
    "BackgroundServer": ".server", "serve": ".server",
    "DynamicBatcher": ".batching", "QueueFull": ".batching",
    "ServeConfig": ".config",
    "create_app": ".app", "load_for_serving": ".app",
    "UploadError": ".uploads", "sniff": ".uploads",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)

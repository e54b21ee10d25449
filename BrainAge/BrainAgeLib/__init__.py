"""BrainAge: brain age from one T1-weighted MRI (Qt-free core of the Slicer extension).

``from BrainAgeLib import predict`` gives :func:`BrainAgeLib.pipeline.predict`; it is imported
on first use, so that importing the package stays light (no torch).
"""
__version__ = "0.1.0"
__all__ = ["predict", "BrainAgeResult"]


def __getattr__(name: str):
    if name in __all__:
        from . import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f"module 'BrainAgeLib' has no attribute {name!r}")

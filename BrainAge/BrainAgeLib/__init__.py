"""BrainAge: brain age from one T1-weighted MRI (Qt-free core of the Slicer extension)."""
__version__ = "0.1.0"

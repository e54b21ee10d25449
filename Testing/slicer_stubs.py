"""Stand-ins for the Qt-only parts of Slicer (ScriptedLoadableModule, parameterNodeWrapper, i18n,
qt.QTimer), so that BrainAge.py loads on slicer-core's real MRML without the application. Kept
apart from the tests so that a fresh Python without torch can load them (the self-test check)."""
from __future__ import annotations

import time
import types
import unittest

import slicer


def _stub_modules() -> dict[str, types.ModuleType]:
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text

    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogicWithNode(ScriptedLoadableModuleLogic):
        def getParameterNode(self):
            return slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "BrainAge")

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            self.displayed = getattr(self, "displayed", []) + [message]

    slm.ScriptedLoadableModule = ScriptedLoadableModule
    slm.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogicWithNode
    slm.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    slm.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest

    def parameterNodeWrapper(cls):
        """Attributes with the class defaults (the GUI binding needs the Slicer application)."""
        def __init__(self, node=None):
            self.parameterNode = node
            for name in cls.__annotations__:
                setattr(self, name, getattr(cls, name, None))
        cls.__init__ = __init__
        return cls

    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = parameterNodeWrapper

    class WithinRange:
        def __init__(self, lo, hi):
            self.lo, self.hi = lo, hi

    pnw.WithinRange = WithinRange
    qt = types.ModuleType("qt")
    qt.QTimer = QTimer
    qt.Qt = types.SimpleNamespace(WaitCursor=3)
    return {"slicer.i18n": i18n, "slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": pnw,
            "qt": qt}


class QTimer:
    """Records what the logic asks of its polling timer; tests fire the timeouts themselves."""

    created = []

    def __init__(self):
        self.interval, self.active, self.slots = None, False, []
        QTimer.created.append(self)

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self.slots.append(slot)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def fire_until_stopped(self, timeout=900.0, interval=0.05, between=None):
        t_end = time.monotonic() + timeout
        while self.active and time.monotonic() < t_end:
            for slot in self.slots:
                slot()
            if between:
                between()
            time.sleep(interval)
        assert not self.active, "the job did not end"

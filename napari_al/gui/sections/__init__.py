"""The dock widget's sections, one module each: project, model, query, train, evaluate, keys.

Each section is a :class:`~qtpy.QtWidgets.QGroupBox` that builds its own controls, reads its
parameters and shows what it is given; :class:`~napari_al.gui.widget.ActiveLearningWidget`
composes them and starts the background jobs.
"""

from __future__ import annotations

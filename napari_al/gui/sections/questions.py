"""The Questions section: the dialog planner's current question in words, its answer keys, and
the seconds spent annotating so far (:mod:`napari_al.gui.dialog_mode`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout

if TYPE_CHECKING:
    from napari_al.gui.controller import AnnotationController

#: The key that asks the next question (:data:`napari_al.gui.keys.KEYS`).
NEXT_KEY = "J"


class QuestionsSection(QGroupBox):
    """Shows ``controller.question``: the question, where (image file), why (its value: gain,
    P(yes), seconds), its keys; and ``store.annotation_seconds()``. *Next question* is J."""

    def __init__(self, controller: AnnotationController) -> None:
        super().__init__("Questions")
        self.controller = controller
        layout = QVBoxLayout(self)
        self.question_label = QLabel()
        self.question_label.setWordWrap(True)
        self.keys_label = QLabel()
        self.keys_label.setWordWrap(True)
        self.detail_label = QLabel()
        self.detail_label.setWordWrap(True)
        self.seconds_label = QLabel()
        self.next_button = QPushButton(f"Next question ({NEXT_KEY})")
        self.next_button.setToolTip(
            "Ask the dialog planner's next question: the one worth most per second of your "
            "time (what it teaches, what it saves against drawing; docs/strategies.md)"
        )
        self.next_button.clicked.connect(controller.next_question)
        for w in (
            self.question_label,
            self.keys_label,
            self.detail_label,
            self.seconds_label,
            self.next_button,
        ):
            layout.addWidget(w)
        self.refresh()

    def refresh(self) -> None:
        """Show the question and the seconds spent (on every controller event)."""
        c = self.controller
        store, q = c.store, c.question
        seconds = 0.0 if store is None else store.annotation_seconds()
        self.seconds_label.setText(f"seconds spent so far: {seconds:.0f} s")
        if store is None:
            self.question_label.setText("open a project")
            self.keys_label.setText("")
            self.detail_label.setText("")
            return
        if q is None:
            n = len(c.dialog_queue)
            stored = f"{n} questions planned" if n else "no questions planned yet"
            text = f"{stored}; {NEXT_KEY} asks the first"
            if c.dialog_done:
                text = f"no question left worth its seconds: retrain, or rank again ({NEXT_KEY})"
            self.question_label.setText(text)
            self.keys_label.setText("")
            self.detail_label.setText("")
            return
        name = Path(store.image(q.image_id).path).name
        status = c.question_status()
        prefix = "" if status == "open" else f"answered; {NEXT_KEY}: next question. "
        self.question_label.setText(f"{prefix}{q.text} ({name})")
        self.keys_label.setText(q.keys_text)
        self.detail_label.setText(
            f"{q.kind}: value {q.value:.3f}/s, gain {q.gain:.2f}, P(yes) {q.p_yes:.2f}, "
            f"about {q.seconds:.1f} s, saves {q.saved_s:.1f} s against drawing; "
            f"missed objects by {q.supervision}"
        )

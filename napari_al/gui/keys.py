"""The annotation keys: one table, used to bind them, to list them in the widget and in tests.

Chosen to collide with nothing napari 0.9 binds by default on the viewer, in its menus, or on
Shapes, Image, Points and Labels layers (Shapes uses R E L T P D S Z I X F B A, Shift+L, Shift+P,
1-7, Delete, Backspace, Enter, Escape, Ctrl+C/V/A; Image C O X Y Z 1 2; Labels M and more; the
viewer V, Shift+V, Space, the arrows and Ctrl combinations such as Ctrl+R, Ctrl+Y, Ctrl+G).
The one shared pair is Ctrl+Z / Ctrl+Shift+Z, which a selected Labels layer keeps for its own
undo. ``tests/test_gui.py`` checks this against napari's live keymaps.

Lower case acts on a box, Shift on the whole image: W accepts a box, Shift+W completes the image;
Q rejects a box, Shift+Q skips the image. The rich verification answers
(:mod:`napari_al.core.answers`) are Shift keys on the box, as napari's own lower-case letters
are taken: Shift+E the box covers part of the object (expand it), Shift+S it contains the object
and more (shrink it), Shift+K several objects (click them: K is click mode). With W (yes), Q (no)
and 1-9 (wrong class) that makes the six answers of Benenson's slides one key each. J asks the
dialog planner's next question (:mod:`napari_al.gui.dialog_mode`); the answers are these keys.

Digits are the exception, on purpose: ``1``-``9`` set the class. They are bound on the ``boxes``
layer itself (overriding Shapes' mode keys 1-7 on that layer only; the letter keys for the modes,
R for rectangles, S for select, D for direct, Z for pan/zoom, still work there). The viewer-level
keys work whichever layer is selected; the digits need the boxes layer selected, which the
plugin does whenever it shows an image.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One binding: the napari key string, the controller method it calls, what it does,
    and where it is bound (``viewer`` or ``boxes`` layer)."""

    key: str
    action: str
    help: str
    scope: str = "viewer"

    @property
    def label(self) -> str:
        """The key as a person reads it (``Ctrl+Shift+Z``)."""
        return self.key.replace("Control", "Ctrl").replace("-", "+")


KEYS: tuple[Key, ...] = (
    Key("W", "accept", "accept the selected (or focused) box, then focus the next unreviewed"),
    Key("Q", "reject", "reject the selected (or focused) box, then focus the next unreviewed"),
    *(
        Key(
            str(n),
            f"class_{n}",
            f"class {n}: for the selected box(es) and for the boxes you draw next",
            "boxes",
        )
        for n in range(1, 10)
    ),
    Key(
        "K",
        "toggle_click_mode",
        "click mode on/off: a left click on an object's centre boxes it as the current class "
        "(W/Q answer it)",
    ),
    Key(
        "Shift-E",
        "answer_part",
        "the box covers only part of the object: a larger box from the model is proposed, "
        "selected (W/Q answer it)",
    ),
    Key(
        "Shift-S",
        "answer_container",
        "the box contains the object and more: a smaller box from the model is proposed, "
        "selected (W/Q answer it)",
    ),
    Key(
        "Shift-K",
        "answer_several",
        "the box holds several objects: it is set aside and click mode starts, click each one",
    ),
    Key(
        "Shift-M",
        "region_yes",
        'region question "any more <class> here?" (dashed): yes, then click every missed '
        "object in the region (click mode there; K when done)",
    ),
    Key(
        "Shift-X",
        "region_no",
        'region question "any more <class> here?" (dashed): no, the region is empty of the '
        "class (undoable)",
    ),
    Key(
        "J",
        "next_question",
        "the dialog planner's next question (Questions panel): its image, its box or region; "
        "answer it with the keys it names",
    ),
    Key("G", "next_unreviewed", "focus the next unreviewed box of this image"),
    Key("N", "next_item", "go to the next queried item (image, box or region)"),
    Key("Shift-N", "previous_item", "go to the previous queried item"),
    Key("Shift-W", "complete_image", "mark this image complete, go to the next queried item"),
    Key(
        "Shift-C",
        "complete_region",
        "mark the part of the image on screen complete (every object in view labelled; a large "
        "image trains in crops from its complete regions), outlined green; undoable",
    ),
    Key("Shift-Q", "skip_image", "skip this image (logged), go to the next queried item"),
    Key("Control-Z", "undo", "undo the last annotation action"),
    Key("Control-Shift-Z", "redo", "redo the last undone action"),
    Key("H", "toggle_rejected", "hide / show rejected boxes"),
    Key("Shift-H", "toggle_highlights", "hide / show highlighted regions and suggestions"),
)

#: Mouse and napari's own keys that belong to the loop (documentation only).
NAPARI_KEYS: tuple[tuple[str, str], ...] = (
    ("R", "draw rectangles (napari's rectangle mode); a drawn box gets the current class"),
    ("S", "select mode: click a box to select it, drag it or its handles to correct it"),
    ("Delete / Backspace", "delete the selected boxes (undoable with Ctrl+Z)"),
    ("Z", "pan/zoom mode"),
)


def key_table() -> list[tuple[str, str]]:
    """(key, description) rows for the widget and the README; digits folded into one row."""
    rows: list[tuple[str, str]] = []
    for k in KEYS:
        if k.action.startswith("class_"):
            if k.key == "1":
                rows.append(
                    (
                        "1-9",
                        "set the class of the selected box(es); also the class "
                        "of the next boxes you draw (on the boxes layer)",
                    )
                )
            continue
        rows.append((k.label, k.help))
    rows.extend(NAPARI_KEYS)
    return rows

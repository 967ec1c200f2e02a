"""The damage check every open runs: each page of every table and index is read once.

SQLite reports a damaged page only when a query reads it, so a command whose queries miss the
page (an export reads the labelled images' boxes through an index, never the action log) used
to run on a damaged store and exit 0. :func:`check_pages` reads every b-tree page of the file
at open instead, so a damaged store is refused by every command, before it does anything.

Why not ``PRAGMA quick_check``: it also checks each cell, the free-page list and that every
page is used exactly once, and on a large store that costs seconds at every open. Measured
(SQLite 3.40.1, a 2-core Xeon VM; ``docs/store.md``, "Backups and a damaged store") on a
generated store of 20,000 images with 50 boxes and 50 logged actions each (390 MB, 95,238
pages of 4 KiB), the file in the page cache: ``quick_check`` 2.3-2.6 s, ``quick_check(1)``
1.8-2.6 s (it stops at the first error, no sooner on a sound file), ``integrity_check``
3.9-5.1 s, this walk 0.27-0.28 s; read from disk, ``quick_check`` 9.1-9.9 s and this walk
2.3 s. Where the whole of a page is damaged (a failed sector, a block of zeros from a copy
cut short) the walk finds exactly what ``quick_check`` finds, page for page
(``tests/test_store_damage.py``). It does not read overflow pages (the rest of a value over
about 4 KB) nor the free-page list, and does not check the cells inside a page;
``ProjectStore.integrity_check()`` does.
"""

from __future__ import annotations

import sqlite3


def _quoted(name: str) -> str:
    """``name`` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def check_pages(conn: sqlite3.Connection) -> int:
    """Read every page of every table and index b-tree of ``conn``'s main file.

    A table is counted with ``count(*) ... NOT INDEXED`` (SQLite's count opcode walks every
    page of the table's b-tree, reading each page's header), an index scanned whole with
    ``INDEXED BY`` (every page, every entry; the rows' values are not decoded). Partial
    indexes are skipped (none in napari-al's schema). Runs in one read transaction.

    Returns the number of table rows and index entries read. Raises ``sqlite3.DatabaseError``
    (``database disk image is malformed``, ``disk I/O error``...) at the first damaged page.
    Cost: about 2.5 ms per 10,000 rows or entries with the file in the page cache; a file
    read from disk costs its read time (2.5 s for 390 MB here).
    """
    started = not conn.in_transaction
    if started:
        conn.execute("BEGIN")
    try:
        objects = conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master "
            "WHERE type IN ('table', 'index') AND rootpage > 0 ORDER BY rootpage"
        ).fetchall()
        partial = {
            row[0]
            for row in conn.execute(
                "SELECT il.name FROM sqlite_master AS m, pragma_index_list(m.name) AS il "
                "WHERE m.type = 'table' AND il.partial"
            )
        }
        n = 0
        for kind, name, table in objects:
            if kind == "table":
                sql = f"SELECT count(*) FROM {_quoted(name)} NOT INDEXED"
            elif name in partial:
                continue
            else:
                sql = f"SELECT sum(1) FROM {_quoted(table)} INDEXED BY {_quoted(name)}"
            n += int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        if started and conn.in_transaction:
            conn.execute("COMMIT")
    return n

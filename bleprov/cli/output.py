"""Tables a person reads on a terminal and a script reads from a pipe.

On a terminal a table fits the window (long values fold onto more lines). Without one
(``bleprov peer list | grep``, a log file) rich still sized tables to 80 columns, or to
the width of a terminal on stdin, and cut values short with an ellipsis: the peer
fingerprint, the one field a user compares, lost its end. Piped, a table is printed as
wide as its values, each whole on its line.
"""

from __future__ import annotations

from typing import Final

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

#: The widest a piped table may grow: more than any row bleprov prints.
PIPED_TABLE_MAX_WIDTH: Final = 4096


def print_table(console: Console, table: Table) -> None:
    """``table`` on ``console``: at the terminal's width, or whole when not a terminal."""
    if console.is_terminal:
        console.print(table)
        return
    wide = console.options.update_width(PIPED_TABLE_MAX_WIDTH)
    natural = Measurement.get(console, wide, table).maximum
    piped = Console(
        file=console.file,
        width=max(natural, console.width),
        no_color=console.no_color,
        highlight=False,
        soft_wrap=False,
    )
    piped.print(table)

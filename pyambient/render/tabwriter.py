"""Go `text/tabwriter` emulation for padchar ' ' and flags 0.

Cells are `\t`-terminated; the text after the last tab of a line is written raw. A column block is a
run of consecutive lines that have a terminated cell at that index; its width is the largest rune
count in the block plus `padding` (at least `minwidth`). A line without any tab flushes the writer.
"""

from __future__ import annotations


class TabWriter:
    def __init__(self, minwidth: int = 0, tabwidth: int = 8, padding: int = 1) -> None:
        self.minwidth = minwidth
        self.tabwidth = tabwidth
        self.padding = padding
        self._out: list[str] = []
        self._lines: list[list[str]] = []
        self._partial = ""

    def write(self, text: str) -> None:
        text = self._partial + text
        pieces = text.split("\n")
        self._partial = pieces.pop()
        for piece in pieces:
            cells = piece.split("\t")
            self._lines.append(cells)
            if len(cells) == 1:
                self._flush_lines()

    def line(self, *cells: object) -> None:
        """Write one line whose cells are joined by tabs (like `fmt.Fprintf(w, "%s\\t%s\\n", ...)`)."""
        self.write("\t".join(str(c) for c in cells) + "\n")

    def _flush_lines(self) -> None:
        widths: list[int] = []
        self._format(widths, 0, len(self._lines))
        self._lines = []

    def _format(self, widths: list[int], line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(self._lines[this]) - 1:
                this += 1
                continue
            self._write_lines(widths, line0, this)
            line0 = this
            width = self.minwidth
            while this < line1:
                cells = self._lines[this]
                if column >= len(cells) - 1:
                    break
                width = max(width, len(cells[column]) + self.padding)
                this += 1
            widths.append(width)
            self._format(widths, line0, this)
            widths.pop()
            line0 = this
        self._write_lines(widths, line0, line1)

    def _write_lines(self, widths: list[int], line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = self._lines[i]
            parts: list[str] = []
            for j, cell in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(cell + " " * (widths[j] - len(cell)))
                else:
                    parts.append(cell)
            self._out.append("".join(parts) + "\n")

    def getvalue(self) -> str:
        """Flush everything written so far and return the whole output."""
        if self._partial:
            cells = self._partial.split("\t")
            if len(cells) > 1 and cells[-1] == "":
                cells.pop()  # Go only terminates a non-empty trailing cell at Flush
            self._lines.append(cells)
            self._partial = ""
            self._flush_lines()
            # the final partial line has no newline
            self._out[-1] = self._out[-1][:-1]
        elif self._lines:
            self._flush_lines()
        return "".join(self._out)

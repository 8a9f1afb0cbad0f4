"""The recognizer's alphabet: class 0 is the CTC blank, classes 1..N are characters."""
from __future__ import annotations

from pathlib import Path

BLANK = "<blank>"


class Charset:
    """Maps characters to class indices and back; unknown characters have no index."""

    def __init__(self, chars: list[str]) -> None:
        if len(set(chars)) != len(chars):
            raise ValueError("charset has duplicate characters")
        self.classes: list[str] = [BLANK, *chars]
        self.index: dict[str, int] = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def from_file(cls, path: str | Path) -> "Charset":
        # One character per line; the space is a line holding one space, so lines are not stripped.
        text = Path(path).read_text(encoding="utf-8")
        return cls([line for line in text.split("\n") if line != ""])

    @classmethod
    def from_string(cls, chars: str) -> "Charset":
        return cls(list(chars))

    def to_file(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.classes[1:]) + "\n", encoding="utf-8")

    def encode(self, text: str) -> list[int]:
        """Class indices of the characters of text; raises KeyError on an unknown character."""
        return [self.index[c] for c in text]

    def covers(self, text: str) -> bool:
        return all(c in self.index for c in text)

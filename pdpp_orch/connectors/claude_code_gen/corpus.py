"""The text generated events and notes are cut from."""

from __future__ import annotations

import random

from pdpp_orch.connectors.claude_code_gen.vocab import WORDS


class Corpus:
    """Text drawn by slicing one pre-built string: far cheaper than joining words per event."""

    def __init__(self, rng: random.Random, size: int = 1 << 20):
        words = rng.choices(WORDS, k=size // 5)
        for i in range(0, len(words), 97):
            words[i] += "\n"
        for i in range(0, len(words), 4099):
            words[i] += "\u2028"  # a real line-splitting trap: not a line break in JSONL
        self.text = " ".join(words)
        self.n = len(self.text)

    def take(self, rng: random.Random, lo: int, hi: int) -> str:
        """A slice of `lo` to `hi` characters at a random place."""
        length = rng.randint(lo, hi)
        at = rng.randrange(0, self.n - length)
        return self.text[at : at + length]

"""What every service's synthetic data is derived from: a 64-bit hash, id characters and words.

A value is a pure function of (world seed, stream tag, index), so any record can be computed
when a page is served instead of being stored.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

US = 1_000_000  # microseconds per second
DAY_S = 86_400

_M64 = 2**64 - 1
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Distinct stream tags so that e.g. Slack user 5 and Gmail message 5 never share a hash.
T_GMAIL, T_SLACK_USER, T_SLACK_CHAN, T_SLACK_MSG, T_SLACK_DIST, T_CHATGPT, T_BANK = range(1, 8)


def mix(x: int) -> int:
    """SplitMix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def keyed(seed: int, *parts: int) -> int:
    """The hash of `seed` followed by `parts`: the root of one stream's values."""
    x = seed & _M64
    for p in parts:
        x = mix(x ^ (p & _M64))
    return x


def alnum(h: int, n: int) -> str:
    """`n` base-36 characters (digits, upper-case letters) from the low digits of `h`."""
    out = []
    for _ in range(n):
        h, r = divmod(h, 36)
        out.append(_ALNUM[r])
    return "".join(out)


WORDS = (
    "alpha bravo budget call cedar client data deadline design draft dinner ember falcon garden "
    "harbor invoice juniper kettle launch ledger maple meeting metric migration north notes "
    "ocean orbit paper pilot plan quarter quartz rain release report review river roadmap "
    "schedule signal sprint spruce summer sync ticket timber travel update urgent velvet vendor "
    "weekly willow window winter yarrow zephyr agenda backlog coffee deploy feedback lunch"
).split()
assert len(WORDS) == 64, len(WORDS)  # text generation takes 6 bits per word
FIRST = "Ada Ben Cleo Dev Eli Fay Gus Hana Ivo Jun Kai Lena Milo Nia Omar Pia".split()
LAST = (
    "Abbott Brandt Castro Dunn Eriksen Frost Gupta Hale Ito Jansen Kovac Lund Moreau Novak Ortiz Park".split()
)
_SHIFTS = tuple(range(4, 64, 6))


def phrase(h: int) -> str:
    """3–10 words drawn from the bits of `h`."""
    n = 3 + (h & 7)
    return " ".join([WORDS[(h >> s) & 63] for s in _SHIFTS[:n]])

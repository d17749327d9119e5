"""The Merkle tree of RFC 9162 (Certificate Transparency 2.0) over the event log:
leaf = H(0x00 || data), node = H(0x01 || left || right), SHA-256. Pure functions and the
proof algorithms of sections 2.1.3 and 2.1.4; nothing here knows where hashes are kept."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

# The hash of a perfect subtree: `perfect(level, index)` covers leaves
# [index * 2**level, (index + 1) * 2**level).
Perfect = Callable[[int, int], bytes]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(size: int) -> int:
    """The largest power of two smaller than `size` (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def subtree(lo: int, hi: int, perfect: Perfect) -> bytes:
    """MTH(D[lo:hi]) for the ranges the RFC's recursion visits (lo aligned to a power of
    two at least hi - lo), composed from perfect subtrees."""
    size = hi - lo
    if size == 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return perfect(level, lo >> level)
    k = split(size)
    return node_hash(subtree(lo, lo + k, perfect), subtree(lo + k, hi, perfect))


def inclusion_path(index: int, size: int, perfect: Perfect) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, leaf to root."""
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index - lo < k:
            path.append(subtree(lo + k, hi, perfect))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k, perfect))
            lo += k
    return path[::-1]


def consistency_path(first: int, second: int, perfect: Perfect) -> list[bytes]:
    """PROOF(first, D[second]) of RFC 9162 2.1.4.1."""
    if first == 0 or first >= second:
        return []
    path: list[bytes] = []
    lo, hi, complete = 0, second, True
    while first != hi:
        k = split(hi - lo)
        if first - lo <= k:
            path.append(subtree(lo + k, hi, perfect))
            hi = lo + k
        else:
            path.append(subtree(lo, lo + k, perfect))
            lo += k
            complete = False
    if not complete:
        path.append(subtree(lo, hi, perfect))
    return path[::-1]


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2; equal sizes need equal roots and an empty path."""
    if first == second:
        return first_root == second_root and not path
    if first == 0 or first > second or not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


class Frontier:
    """The roots of the perfect subtrees that make up a tree of `size` leaves, largest
    first: enough to append a leaf and to compute the root without reading the tree."""

    def __init__(self, size: int = 0, roots: Sequence[bytes] = ()) -> None:
        self.size = size
        self.roots = list(roots)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Adds a leaf; returns the inner nodes (level, index, hash) it completed."""
        made: list[tuple[int, int, bytes]] = []
        self.roots.append(leaf)
        self.size += 1
        level = 0
        while (self.size >> level) & 1 == 0:
            right = self.roots.pop()
            merged = node_hash(self.roots.pop(), right)
            level += 1
            made.append((level, (self.size >> level) - 1, merged))
            self.roots.append(merged)
        return made

    def root(self) -> bytes:
        if not self.roots:
            return EMPTY_ROOT
        result = self.roots[-1]
        for left in reversed(self.roots[:-1]):
            result = node_hash(left, result)
        return result


def frontier_coordinates(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees of a tree of `size` leaves, largest first."""
    coordinates, offset = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            coordinates.append((level, offset >> level))
            offset += 1 << level
    return coordinates


class MemoryTree:
    """Every perfect subtree of a list of leaves, built once: proofs for many rows (an
    export) without a query per hash."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1])
                                for i in range(0, len(below) - 1, 2)])

    def perfect(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int) -> bytes:
        return subtree(0, size, self.perfect)

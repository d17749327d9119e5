"""The Merkle tree against RFC 9162's recursive definitions, for every size up to 70:
roots, inclusion and consistency proofs that verify, and ones that must not."""

from __future__ import annotations

import hashlib

import pytest

from infra.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    consistency_path,
    frontier_coordinates,
    inclusion_path,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(str(i).encode()) for i in range(70)]


def mth(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 2.1.1, written as the RFC states it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, leaves[:k]), mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def test_the_empty_tree_and_the_hash_prefixes() -> None:
    assert Frontier().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"a") == hashlib.sha256(b"\x00a").digest()
    assert node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()


def test_frontier_roots_and_nodes_match_the_definition() -> None:
    frontier, nodes = Frontier(), {}
    for size in range(1, len(LEAVES) + 1):
        for level, index, value in frontier.append(LEAVES[size - 1]):
            nodes[level, index] = value
        assert frontier.root() == mth(LEAVES[:size])
        assert [nodes.get(c, LEAVES[c[1]] if c[0] == 0 else b"")
                for c in frontier_coordinates(size)] == frontier.roots
    tree = MemoryTree(LEAVES)
    assert all(tree.perfect(level, index) == value for (level, index), value in nodes.items())


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 70])
def test_inclusion_proofs(size: int) -> None:
    tree = MemoryTree(LEAVES[:size])
    root = mth(LEAVES[:size])
    for index in range(size):
        path = inclusion_path(index, size, tree.perfect)
        assert path == rfc_path(index, LEAVES[:size])
        assert verify_inclusion(LEAVES[index], index, size, path, root)
        assert not verify_inclusion(LEAVES[(index + 1) % 70], index, size, path, root)
        if path:
            forged = [leaf_hash(b"forged"), *path[1:]]
            assert not verify_inclusion(LEAVES[index], index, size, forged, root)


def test_consistency_proofs_for_every_pair() -> None:
    tree = MemoryTree(LEAVES)
    for second in range(1, 40):
        for first in range(1, second + 1):
            path = consistency_path(first, second, tree.perfect)
            assert path == (rfc_subproof(first, LEAVES[:second], True) if first < second
                            else [])
            old, new = mth(LEAVES[:first]), mth(LEAVES[:second])
            assert verify_consistency(first, second, old, new, path)
            if first < second:
                assert not verify_consistency(first, second, leaf_hash(b"x"), new, path)
                assert not verify_consistency(first, second, old, leaf_hash(b"x"), path)


def test_a_rewritten_prefix_fails_consistency() -> None:
    edited = [*LEAVES[:3], leaf_hash(b"edited"), *LEAVES[4:20]]
    path = consistency_path(10, 20, MemoryTree(edited).perfect)
    assert not verify_consistency(10, 20, mth(LEAVES[:10]), mth(edited), path)

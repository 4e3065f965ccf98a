"""Keys and the hash: a key (an example id, a document hash) -> its units of the pool, computed from a
counter-based hash, so nothing is stored and no RNG is touched; and the hash of each token's preceding context
(Goldfish loss)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_MASK63 = (1 << 63) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash63(data: bytes) -> int:
    """A 63-bit hash of bytes (blake2b, 8 bytes, little-endian, top bit cleared): stable across processes and
    runs, unlike Python's salted `hash()`, and a non-negative int64."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


def key_of(value) -> int:
    """A positive 63-bit key for any example id: `hash63` of its string form; 0 maps to 1, since key 0 must
    never occur."""
    return hash63(str(value).encode("utf-8")) or 1


def check_keys(keys) -> torch.Tensor:
    """Keys as a LongTensor; every key must be > 0 (key 0 owned the whole pool in the released MemSinks code)."""
    keys = torch.as_tensor(keys, dtype=torch.long)
    if keys.numel() and int(keys.min()) <= 0:
        raise ValueError(f"key {int(keys.min())} is invalid; allowed: integers > 0 (0 would be a degenerate id)")
    return keys


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrap-around arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def key_units(keys, n_units: int, p: float, salt: int = 0, layer: int = 0) -> torch.Tensor:
    """Bool (n_keys, n_units): unit j is on for key k iff the top 53 bits of mix(mix(k ^ mix(salt, layer)) +
    (j+1)·golden) fall below p·2^53, an independent Bernoulli(p) draw per (key, unit) that needs no RNG."""
    keys = check_keys(keys).reshape(-1).cpu().numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        seed = _mix64(np.array([salt * 1_000_003 + layer + 1], dtype=np.uint64) * _GOLDEN)
        base = _mix64(keys ^ seed)
        h = _mix64(base[:, None] + (np.arange(1, n_units + 1, dtype=np.uint64) * _GOLDEN)[None, :])
    threshold = np.uint64(round(p * (1 << 53)))
    return torch.from_numpy((h >> np.uint64(11)) < threshold)


def general_units(n_units: int, p_gen: float, layout: str = "first", salt: int = 0) -> torch.Tensor:
    """Bool (n_units,): the general units, `int(n_units * p_gen)` of them (upstream's rounding)."""
    n_gen = int(n_units * p_gen)
    out = torch.zeros(n_units, dtype=torch.bool)
    if layout == "first":
        out[:n_gen] = True
    else:  # the n_gen units with the smallest salted hash: a fixed pseudo-random choice
        with np.errstate(over="ignore"):
            h = _mix64((np.arange(1, n_units + 1, dtype=np.uint64) + np.uint64(salt)) * _GOLDEN)
        out[torch.from_numpy(np.argsort(h, kind="stable")[:n_gen].astype(np.int64))] = True
    return out


def context_hashes(input_ids: torch.Tensor, h: int, salt: int = 0) -> torch.Tensor:
    """uint64 hashes (as int64) [B, T - h] of every window of `h` consecutive tokens: column s hashes tokens
    s .. s + h - 1 of its row, so it depends on those tokens alone (not on the row, the batch or the position).
    Empty when T <= h."""
    ids = input_ids.detach().cpu().numpy().astype(np.uint64)
    n = ids.shape[1] - h
    if n <= 0:
        return torch.zeros(ids.shape[0], 0, dtype=torch.long)
    with np.errstate(over="ignore"):
        acc = np.broadcast_to(_mix64(np.array([salt + 1], dtype=np.uint64) * _GOLDEN), (ids.shape[0], n)).copy()
        for j in range(h):
            acc = _mix64(acc * _GOLDEN + ids[:, j:j + n] + np.uint64(1))
    return torch.from_numpy((acc >> np.uint64(1)).astype(np.int64))


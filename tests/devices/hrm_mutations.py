"""Heart Rate Measurement payloads for fuzzing: valid ones, then damaged on purpose.

Helper of tests/devices/test_fuzz.py (not collected). Valid payloads
come from ``devices.hrs.encode_hrm`` with random fields; the damaged ones are those with
bit flips, truncation, extension, random bytes, a changed flags byte or an RR value
set to 0, as a noisy radio or a buggy strap firmware might send them. The mutations
are applied to whole NumPy arrays at once, so a million payloads take about a second.
"""

from __future__ import annotations

import numpy as np

from devices.hrs import FLAG_ENERGY_PRESENT, FLAG_HR_UINT16, FLAG_RR_PRESENT, encode_hrm

WIDTH = 40  # bytes per row: the longest valid payload (23 bytes) plus an extension
MUTATIONS = ("none", "bit_flips", "truncate", "extend", "random_bytes", "flags", "rr_zero")


def valid_payloads(rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` well-formed payloads from encode_hrm: every flag combination, 0-9 RR values."""
    out = []
    for _ in range(n):
        n_rr = int(rng.integers(0, 10))
        # Mostly physiological RR (0.3-2 s), sometimes anything a uint16 holds.
        rr = rng.integers(300, 2048, n_rr) if rng.random() < 0.8 else rng.integers(1, 0x10000, n_rr)
        wide = bool(rng.random() < 0.2)
        hr = int(rng.integers(0, 0x10000 if wide else 0x100)) if rng.random() < 0.1 else int(rng.integers(30, 220))
        if hr == 0 and n_rr == 0:
            hr = 1  # HR 0 with no RR is malformed by definition; keep this list valid
        contact = (None, True, False)[int(rng.integers(0, 3))]
        energy = int(rng.integers(0, 0x10000)) if rng.random() < 0.25 else None
        rr_present = True if (n_rr == 0 and rng.random() < 0.2) else None
        out.append(encode_hrm(hr, rr.tolist(), contact=contact, energy_kj=energy, hr_uint16=wide, rr_present=rr_present))
    return out


def _as_rows(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(payloads), WIDTH), dtype=np.uint8)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    for i, p in enumerate(payloads):
        rows[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
    return rows, lengths


def mutated_payloads(seed: int, n: int, n_valid: int = 5000) -> tuple[list[bytes], np.ndarray]:
    """``n`` payloads and, per payload, the index in MUTATIONS of what was done to it.

    About one in seven is left valid; the others get one mutation each (bit flips may
    flip up to three bits). Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    base_rows, base_len = _as_rows(valid_payloads(rng, n_valid))
    pick = rng.integers(0, n_valid, n)
    rows, length = base_rows[pick].copy(), base_len[pick].copy()
    kind = rng.integers(0, len(MUTATIONS), n)
    idx = np.arange(n)

    flips = np.flatnonzero(kind == MUTATIONS.index("bit_flips"))
    for round_ in range(3):
        sel = flips if round_ == 0 else flips[rng.random(len(flips)) < 0.5]
        pos = (rng.random(len(sel)) * length[sel]).astype(np.int64)
        rows[sel, pos] ^= (1 << rng.integers(0, 8, len(sel))).astype(np.uint8)

    cut = kind == MUTATIONS.index("truncate")
    length[cut] = (rng.random(cut.sum()) * length[cut]).astype(np.int64)  # strictly shorter

    grow = np.flatnonzero(kind == MUTATIONS.index("extend"))
    extra = rng.integers(1, WIDTH - 23 + 1, len(grow))
    cols = np.arange(WIDTH)
    tail = (cols >= length[grow, None]) & (cols < (length[grow] + extra)[:, None])
    noise = rng.integers(0, 256, (len(grow), WIDTH), dtype=np.uint8)
    rows[grow] = np.where(tail, noise, rows[grow])
    length[grow] += extra

    junk = np.flatnonzero(kind == MUTATIONS.index("random_bytes"))
    rows[junk] = rng.integers(0, 256, (len(junk), WIDTH), dtype=np.uint8)
    length[junk] = rng.integers(0, WIDTH + 1, len(junk))

    reflag = np.flatnonzero(kind == MUTATIONS.index("flags"))
    rows[reflag, 0] = rng.integers(0, 256, len(reflag), dtype=np.uint8)

    # RR = 0: zero one RR value of a payload that has some (others stay as they were).
    zero = kind == MUTATIONS.index("rr_zero")
    flags = rows[:, 0].astype(np.int64)
    rr_offset = 2 + (flags & FLAG_HR_UINT16 != 0) + 2 * (flags & FLAG_ENERGY_PRESENT != 0)
    n_rr = np.where(flags & FLAG_RR_PRESENT != 0, (length - rr_offset) // 2, 0)
    sel = np.flatnonzero(zero & (n_rr > 0))
    at = rr_offset[sel] + 2 * (rng.random(len(sel)) * n_rr[sel]).astype(np.int64)
    rows[sel, at] = 0
    rows[sel, at + 1] = 0

    flat = rows.tobytes()
    ends = (idx * WIDTH + length).tolist()
    starts = (idx * WIDTH).tolist()
    return [flat[s:e] for s, e in zip(starts, ends)], kind

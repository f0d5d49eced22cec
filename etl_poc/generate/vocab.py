"""What every period indexes into: the users and the shop's pages, built once per run.

Kept apart from how they are built (population.py, which needs Faker and Polars) so that the
worker processes that render periods import only NumPy and Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class PageVocabulary:
    """Page URLs grouped by event type: `urls[offsets[t] : offsets[t] + sizes[t]]`."""

    urls: pa.Array
    offsets: np.ndarray
    sizes: np.ndarray


@dataclass(frozen=True)
class Population:
    """One row per user, positionally: ids, tier, activity and the devices and IPs they use."""

    user_ids: pa.Array
    tier: np.ndarray  # index into spec.USER_TIERS
    activity_cdf: np.ndarray  # cumulative, normalised activity: heavy-tailed, tier-weighted
    device: np.ndarray  # (n_users, 2): primary and secondary device index
    ip_addresses: pa.Array  # 2 * n_users: primary IPs, then secondary IPs
    ip_is_v6: np.ndarray  # per entry of ip_addresses
    declared_country: pa.Array  # the naive country column's per-user value

    @property
    def size(self) -> int:
        return len(self.user_ids)

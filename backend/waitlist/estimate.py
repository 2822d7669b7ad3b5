"""How long a waiting patient may still wait: a pure function, so it can be reasoned about and tested alone.

The estimate is built from what the practice actually did, not from what it could have done. Its data
are the fills of the entry's queue over the look-back period: for each entry of the queue booked from
the waitlist (an offer accepted), how many days it had waited from joining to booking. Freed slots alone
overstate the pace: many never match a waiting patient's windows, or are declined.

- Pace: each patient ahead, and the patient, needs one fill, so the wait is at least
  `position × look-back days / fills`.
- Time already waited: a patient who has waited W days is compared only with the filled entries that
  waited longer than W; their median wait beyond W is the remaining wait. So a patient who has waited
  12 days is never told "about a day" because most patients used to be booked within two.
- Too little data says little: fewer than `MIN_FILLS` such comparable fills (a young practice, a quiet
  queue, or a patient who has already waited longer than nearly everyone booked) gives no number, and
  the page says "hard to estimate yet".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

MIN_FILLS = 3


def estimate_wait_days(
    *, position: int | None, waited_days: float, fill_waits_days: Sequence[float], lookback_days: float
) -> int | None:
    """Whole days the patient may still wait (at least 1), or None when the data cannot honestly say.

    position: 1-based place in the queue (None: not in a queue); waited_days: how long the patient has
    waited so far; fill_waits_days: for each entry of the queue booked from the waitlist in the last
    `lookback_days` days, the days it had waited when booked.
    """
    if position is None or position < 1 or lookback_days <= 0:
        return None
    waited = max(0.0, waited_days)
    longer = [w - waited for w in fill_waits_days if w > waited]
    if len(fill_waits_days) < MIN_FILLS or len(longer) < MIN_FILLS:
        return None
    pace = position * lookback_days / len(fill_waits_days)
    return max(1, math.ceil(max(pace, statistics.median(longer))))

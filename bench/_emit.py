"""The JSON line every bench prints for each figure it measures (``bench/README.md`` reads them).

``{"bench", "metric", "value", "unit", "anchor", "anchor_value", "ratio", "target", "target_on", "better"}``:
``ratio`` is ``value / anchor_value`` (the anchor measured in the same run) unless given; ``target`` applies to
``target_on`` (``"value"`` or ``"ratio"``); ``better`` says which way is good.
"""

from __future__ import annotations

import json


def emit(bench: str, metric: str, value, unit: str, anchor=None, anchor_value=None, target=None,
         target_on: str = "value", better: str = "higher", ratio=None, digits: int | None = None) -> None:
    """Print one figure's JSON line (``digits``: round the ratio)."""
    if ratio is None and anchor_value not in (None, 0) and value is not None:
        ratio = value / anchor_value
    if ratio is not None and digits is not None:
        ratio = round(ratio, digits)
    print(json.dumps({"bench": bench, "metric": metric, "value": value, "unit": unit, "anchor": anchor,
                      "anchor_value": anchor_value, "ratio": ratio, "target": target, "target_on": target_on,
                      "better": better}), flush=True)

"""Monitoring: prediction logs and actuals in an embedded store, live quality per model version,
drift against the model's training reference, serving figures, and acting on a breach.

`python -m monitoring` (make monitor, make feedback). `quality.py` is pure and imports nothing
from deploy: the router's canary analysis calls it too.
"""

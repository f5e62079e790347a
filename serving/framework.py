"""BentoML's process-wide settings that it has no public switch for, set from service.py.

Both act in the `bentoml serve` process, which imports service.py before it starts the workers
(they inherit the environment and folder it settles on)."""

from __future__ import annotations

import os
from pathlib import Path

from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.utils.analytics import usage_stats


def honour_do_not_track() -> None:
    """`bentoml serve` read BENTOML_DO_NOT_TRACK (and cached it) before importing service.py,
    which sets it: read it again, or the start and exit events are still posted."""
    usage_stats.do_not_track.cache_clear()


def metrics_folder_from_environment() -> None:
    """BentoML keeps every server's multiprocess metrics in $BENTOML_HOME/prometheus_multiproc_dir
    and wipes it whenever any server starts: servers side by side (the releases of a deploy)
    lost their series to the last one started. A server given its own PROMETHEUS_MULTIPROC_DIR
    (a deploy gives each release one) keeps its metrics there instead."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)  # prometheus_client writes there at once
        BentoMLContainer.prometheus_multiproc_dir.set(folder)

"""Tell people how a delivery ended: a Slack incoming webhook, when its URL is configured."""

from __future__ import annotations

import httpx

ICONS = {"success": ":white_check_mark:", "failure": ":x:", "cancelled": ":warning:"}


class NotifyError(RuntimeError):
    pass


def message(status: str, what: str, link: str | None = None) -> str:
    text = f"{ICONS.get(status, ':grey_question:')} bentogate delivery {status}: {what}"
    return f"{text} (<{link}|run>)" if link else text


def slack(webhook_url: str, text: str, timeout: float = 10.0) -> None:
    try:
        response = httpx.post(webhook_url, json={"text": text}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise NotifyError(f"Slack webhook unreachable: {type(exc).__name__}") from None
    if response.status_code != 200:
        # Slack answers a plain-text reason (e.g. "invalid_token"); never echo the URL: it is a secret.
        raise NotifyError(f"Slack webhook answered {response.status_code}: {response.text[:200]}")

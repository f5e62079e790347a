"""Acting on a breach: tell people (Slack, as the delivery does) and, where monitoring/config.yaml
says `rollback` for the environment, go back one release with the deploy's own rollback."""

from __future__ import annotations

import contextlib
import io

from core.settings import Settings
from deploy import notify


def message(environment: str, model: str, why: list[str], action: str, link: str | None) -> str:
    text = f":x: bentogate monitor: {environment}/{model} DEGRADED: {'; '.join(why)}. {action}"
    return f"{text} (<{link}|report>)" if link else text


def rollback(environment: str, model: str) -> tuple[bool, str]:
    """`python -m deploy rollback ENV --model MODEL`, in process: (done, what it said)."""
    from deploy.__main__ import main as deploy_main  # the deploy CLI: loaded only to roll back

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = deploy_main(["rollback", environment, "--model", model])
    said = (out.getvalue() + err.getvalue()).strip().replace("\n", " ")
    return code == 0, said


def send(settings: Settings, text: str) -> str:
    """Post to Slack when a webhook is configured; say what happened either way."""
    if settings.slack_webhook_url is None:
        return f"no Slack webhook configured (SLACK_WEBHOOK_URL); would send: {text}"
    try:
        notify.slack(settings.slack_webhook_url.get_secret_value(), text)
    except notify.NotifyError as exc:
        return f"notification failed: {exc}"
    return "sent to Slack"

"""Command line of the deploy targets: `python -m deploy <command>`.

Exit codes: 0 success; 1 the release did not go live (failed readiness, smoke test or rollout; the
previous release keeps serving) or approval was declined; 2 invalid config, arguments or state;
3 an unexpected error (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import bentoml

from core import registry
from core.settings import ROOT, Settings, get_settings
from core.yamlconf import ConfigError
from deploy import config as deploy_config
from deploy import evidence, kubernetes, notify, release, smoke
from deploy.local import DeployError, LocalTarget, UsageError
from serving.runtime import LAST_BUILD, bento_model_tag, last_build

EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 1, 2, 3


def _bento(arg: str | None) -> tuple[str, str]:
    """(Bento tag, the model tag it serves): the given Bento or the last `make build`."""
    arg = arg or last_build()
    if arg is None:
        raise UsageError("no Bento given and no build/bento-tag: run `make build` first")
    try:
        bento, model_tag = str(bentoml.bentos.get(arg).tag), bento_model_tag(arg)
    except (bentoml.exceptions.NotFound, ValueError):
        raise UsageError(
            f"no Bento {arg!r} in the store ({os.environ.get('BENTOML_HOME', '~/bentoml')})"
        ) from None
    if not model_tag:
        raise UsageError(f"Bento {bento} has no model_tag label: build it with `make build`")
    return bento, model_tag


def _manifests(
    name: str, cfg: deploy_config.KubernetesConfig, bento: str, model_tag: str
) -> list[dict[str, Any]]:
    repo = os.environ.get("BENTOGATE_IMAGE_REPOSITORY") or cfg.image_repository
    image = kubernetes.image_of(bento, repo)
    return kubernetes.render(
        cfg, environment=name, bento_tag=bento, model_tag=model_tag, image=image
    )


def _promote(model_tag: str) -> None:
    promoted, previous = registry.promote(model_tag)
    print(f"model {promoted} is now production" + (f"; {previous} archived" if previous else ""))


def cmd_deploy(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    env = cfg.env(args.env, args.target)
    bento, model_tag = _bento(args.bento)
    if env.target == "kubernetes":
        assert env.kubernetes is not None
        manifests = _manifests(args.env, env.kubernetes, bento, model_tag)
        kubernetes.apply(
            kubernetes.to_yaml(manifests),
            env.kubernetes,
            manifests[0]["metadata"]["name"],
            model_tag,
        )
        url = env.kubernetes.url or f"deployment/{manifests[0]['metadata']['name']}"
    else:
        target = LocalTarget(args.env, env, settings.deploy_dir)
        target.deploy(bento, model_tag, approved_by=args.approved_by)
        url = target.url
    if env.promotes_model:
        _promote(model_tag)
    print(f"{args.env}: {model_tag} ({bento}) serving at {url}")
    return 0


def cmd_rollback(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    env = cfg.env(args.env, args.target)
    if env.target == "kubernetes":
        assert env.kubernetes is not None
        name = kubernetes.app_name(settings.model)
        kubernetes.undo(env.kubernetes, name)
        print(f"{args.env}: deployment/{name} rolled back to its previous revision")
        return 0
    target = LocalTarget(args.env, env, settings.deploy_dir)
    release = target.rollback()
    if env.promotes_model and release.model_tag:
        _promote(release.model_tag)
    print(f"{args.env}: rolled back to {release.bento} ({release.id}) at {target.url}")
    return 0


def cmd_down(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    names = args.env or sorted(
        {n for n, e in cfg.environments.items() if e.local}
        | {p.name for p in settings.deploy_dir.glob("*") if p.is_dir()}
    )
    for name in names:
        env = cfg.environments.get(name)
        if env is None or env.local is None:
            continue
        stopped = LocalTarget(name, cfg.env(name, "local"), settings.deploy_dir).down()
        print(f"{name}: " + (f"stopped {', '.join(stopped)}" if stopped else "nothing running"))
    return 0


def cmd_status(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    for name, env in cfg.environments.items():
        if env.local is None:
            continue
        st = LocalTarget(name, cfg.env(name, "local"), settings.deploy_dir).status()
        live = st["live"]
        print(
            f"{name:<11} {st['url']:<24} "
            + (
                f"{live['id']} {live['bento']} (model {live['model_tag']})"
                if live
                else "not serving"
            )
        )
    return 0


def cmd_smoke(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    url = args.target_url
    if not url.startswith("http"):
        env = cfg.env(url, "local")
        url = LocalTarget(args.target_url, env, settings.deploy_dir).url
    checks = smoke.smoke(url, args.model_tag)
    for c in checks:
        print(f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
    return 0 if smoke.passed(checks) else EXIT_FAILED


def cmd_manifests(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    env = cfg.env(args.env, "kubernetes")
    assert env.kubernetes is not None
    bento, model_tag = _bento(args.bento)
    manifests = _manifests(args.env, env.kubernetes, bento, model_tag)
    if problems := kubernetes.validate(manifests):
        print("error: rendered manifests are invalid:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_FAILED
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.env}.yaml"
    path.write_text(kubernetes.to_yaml(manifests))
    print(
        f"{path}: {', '.join(m['kind'] for m in manifests)} (valid for Kubernetes {kubernetes.KUBERNETES_VERSION})"
    )
    return 0


def cmd_evidence(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    bento, model_tag = _bento(args.bento)
    text = evidence.markdown(bento, model_tag, settings.reports_dir, links=args.link or [])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


def cmd_approve(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    cfg.env(args.env)
    bento, model_tag = _bento(args.bento)
    text = evidence.markdown(bento, model_tag, settings.reports_dir)
    (settings.reports_dir / "evidence.md").write_text(text)
    print(text)
    question = f"Deploy {bento} (model {model_tag}) to {args.env}? [y/N] "
    if os.environ.get("APPROVE") == "1":
        print(question + "yes (APPROVE=1)")
    elif sys.stdin.isatty():
        if input(question).strip().lower() not in ("y", "yes"):
            print(f"declined: {args.env} keeps its current release", file=sys.stderr)
            return EXIT_FAILED
    else:
        print(
            f"error: approval for {args.env} needed: answer at a terminal or set APPROVE=1",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"approved: {bento} to {args.env} by {getpass.getuser()}")
    return 0


def cmd_export(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    bento, model_tag = _bento(args.bento)
    out = release.export(bento, model_tag, args.out)
    print(f"exported {bento} and {model_tag} to {out}")
    return 0


def cmd_import(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    try:
        rel = release.import_(args.src)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if args.as_last_build and rel["bento"]:
        LAST_BUILD.parent.mkdir(parents=True, exist_ok=True)
        LAST_BUILD.write_text(rel["bento"] + "\n")
    print(f"imported {rel['bento'] or 'model'} {rel['model_tag']}")
    return 0


def cmd_notify(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    text = notify.message(args.status, args.what, args.link)
    if settings.slack_webhook_url is None:
        print(f"no Slack webhook configured (SLACK_WEBHOOK_URL); would send: {text}")
        return 0
    notify.slack(settings.slack_webhook_url.get_secret_value(), text)
    print(f"sent to Slack: {text}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    d = sub.add_parser("deploy", help="release a Bento to an environment (default: last build)")
    d.add_argument("env")
    d.add_argument("bento", nargs="?")
    d.add_argument("--target", choices=["local", "kubernetes"], help="override the config's target")
    d.add_argument("--approved-by", help="recorded in the release history")
    r = sub.add_parser("rollback", help="go back one release")
    r.add_argument("env")
    r.add_argument("--target", choices=["local", "kubernetes"])
    dn = sub.add_parser("down", help="stop every service the local target started")
    dn.add_argument("env", nargs="*")
    sub.add_parser("status", help="what each local environment serves")
    s = sub.add_parser("smoke", help="smoke-test an environment (name) or a URL")
    s.add_argument("target_url", metavar="env|url")
    s.add_argument("--model-tag", help="the model that must answer")
    m = sub.add_parser("manifests", help="render and validate Kubernetes manifests")
    m.add_argument("env")
    m.add_argument("bento", nargs="?")
    m.add_argument("--out", type=Path, default=ROOT / "build" / "k8s")
    e = sub.add_parser("evidence", help="the reviewer's evidence as Markdown")
    e.add_argument("bento", nargs="?")
    e.add_argument("--out", type=Path, default=get_settings().reports_dir / "evidence.md")
    e.add_argument("--link", action="append", help="NAME=URL of a report, repeatable")
    a = sub.add_parser("approve", help="show the evidence and ask for approval (APPROVE=1: given)")
    a.add_argument("env")
    a.add_argument("bento", nargs="?")
    x = sub.add_parser("export", help="export a Bento and its model to a directory")
    x.add_argument("bento", nargs="?")
    x.add_argument("--model", help="export this model alone (from training to the build)")
    x.add_argument("--out", type=Path, default=ROOT / "build" / "release")
    i = sub.add_parser("import", help="import a release exported by `export`")
    i.add_argument("src", type=Path)
    i.add_argument("--as-last-build", action="store_true", help="make it what `make deploy` ships")
    n = sub.add_parser("notify", help="post the pipeline's outcome to Slack (if SLACK_WEBHOOK_URL)")
    n.add_argument("status", choices=["success", "failure", "cancelled", "skipped"])
    n.add_argument("what", help="what happened, e.g. the Bento and environment")
    n.add_argument("--link", help="URL of the run")
    return p


COMMANDS = {
    "deploy": cmd_deploy,
    "rollback": cmd_rollback,
    "down": cmd_down,
    "status": cmd_status,
    "smoke": cmd_smoke,
    "manifests": cmd_manifests,
    "evidence": cmd_evidence,
    "approve": cmd_approve,
    "export": cmd_export,
    "import": cmd_import,
    "notify": cmd_notify,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    try:
        cfg = deploy_config.load(settings.deploy_config)
        return COMMANDS[args.command](args, settings, cfg)
    except (ConfigError, UsageError, registry.RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DeployError, kubernetes.RolloutError, notify.NotifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # a bug: keep the traceback, and never look like a failed release
        traceback.print_exc()
        print("error: unexpected failure (a bug): see the traceback above", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())

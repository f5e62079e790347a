"""Command line of the deploy targets: `python -m deploy <command>`.

Each model has its own stable address, history and rollback in each environment
(deploy/addresses.py); a Bento's model is its `model_tag` label.

Exit codes: 0 success; 1 the release did not go live (failed readiness, smoke test or rollout; the
previous release keeps serving) or approval was declined; 2 invalid config, arguments or state;
3 an unexpected error (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import bentoml
import httpx

from core import cli, registry
from core.settings import ROOT, Settings, get_settings
from core.yamlconf import ConfigError
from deploy import addresses, evidence, kubernetes, notify, release, shadow_report, smoke
from deploy import config as deploy_config
from deploy.local import (
    DeployError,
    LocalTarget,
    UsageError,
    legacy_state,
    migrate_legacy,
    recorded_port,
    state_models,
)
from models import available
from models.config import DeployConfig as ModelDeploy
from models.config import package_config
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
    # The Bento serves the store's copy of its model: it ships only if its files are the
    # registered ones (the service checks again before it loads them).
    registry.verify(registry.get(model_tag))
    return bento, model_tag


def _model_deploy(model_tag: str) -> ModelDeploy:
    """The model's `deploy` section: its package's config, else the one recorded with it."""
    try:
        recorded = registry.metadata(bentoml.models.get(model_tag)).get("config")
    except (bentoml.exceptions.NotFound, ValueError):
        recorded = None
    cfg = package_config(model_tag.split(":")[0], recorded)
    return cfg.deploy if cfg is not None else ModelDeploy()


def _local(
    settings: Settings,
    cfg: deploy_config.DeployConfig,
    env_name: str,
    model: str,
    deploy: ModelDeploy | None = None,
) -> LocalTarget:
    """The local target of one model in one environment, at the model's own port."""
    env = cfg.env(env_name, "local")
    models = addresses.package_deploys()
    if deploy is not None and model not in models:  # a Bento whose package is not here
        models[model] = deploy
    port = addresses.ports(cfg, models).get((env_name, model))
    migrate_legacy(settings.deploy_dir / env_name)
    # A model deployed here whose package is gone keeps the port its router was started on.
    port = port or recorded_port(settings.deploy_dir, env_name, model)
    if port is None:
        raise UsageError(
            f"{env_name}/{model}: no model package models/{model} and nothing of it deployed here"
        )
    return LocalTarget(env_name, env, settings.deploy_dir, model, port)


def _check_model(args: argparse.Namespace, model_tag: str) -> None:
    if args.model and model_tag.split(":")[0] != args.model:
        raise UsageError(
            f"the Bento serves {model_tag}, not a {args.model!r} model:"
            f" build one with `make build MODEL={args.model}` or pass BENTO=..."
        )


def _k8s_url(cfg: deploy_config.KubernetesConfig, env_name: str, model_tag: str) -> str | None:
    """Where the smoke test reaches this model: the model's own url for the environment, else
    the environment's url with {model} filled in."""
    own = _model_deploy(model_tag).environments.get(env_name)
    if own is not None and own.url:
        return own.url
    return cfg.url.replace("{model}", model_tag.split(":")[0]) if cfg.url else None


def _manifests(
    name: str, cfg: deploy_config.KubernetesConfig, bento: str, model_tag: str
) -> list[dict[str, Any]]:
    repo = os.environ.get("BENTOGATE_IMAGE_REPOSITORY") or cfg.image_repository
    image = kubernetes.image_of(bento, repo)
    rendered = kubernetes.render_stable(
        cfg, environment=name, bento_tag=bento, model_tag=model_tag, image=image
    )
    # The scheduled monitor (monitoring/) runs this repository's image, tagged like the Bento's.
    monitor = kubernetes.monitor_cronjob(
        cfg,
        environment=name,
        model=model_tag.split(":")[0],
        image=kubernetes.image_of(bento, f"{repo}-monitor"),
    )
    return [*rendered, monitor]


def _notifier(settings: Settings):
    """Post a line to Slack when a webhook is configured; print it in any case."""

    def send(text: str) -> None:
        print(f"notify: {text}", file=sys.stderr)
        if settings.slack_webhook_url is not None:
            try:
                notify.slack(settings.slack_webhook_url.get_secret_value(), f":warning: {text}")
            except notify.NotifyError as exc:
                print(f"notify: {exc}", file=sys.stderr)

    return send


def _promote(model_tag: str) -> None:
    promoted, previous = registry.promote(model_tag)
    print(f"model {promoted} is now production" + (f"; {previous} archived" if previous else ""))


def cmd_deploy(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    env = cfg.env(args.env, args.target)
    bento, model_tag = _bento(args.bento)
    _check_model(args, model_tag)
    if args.strategy in ("shadow", "canary") and env.target != "local":
        raise UsageError(f"STRATEGY={args.strategy} runs on the local target only (for now)")
    if env.target == "kubernetes":
        assert env.kubernetes is not None
        k8s = env.kubernetes.model_copy(
            update={"url": _k8s_url(env.kubernetes, args.env, model_tag)}
        )
        manifests = _manifests(args.env, k8s, bento, model_tag)
        kubernetes.apply(
            kubernetes.to_yaml(manifests),
            k8s,
            kubernetes.stable_deployment(model_tag.split(":")[0]),
            model_tag,
        )
        url = k8s.url or f"deployment/{kubernetes.stable_deployment(model_tag.split(':')[0])}"
    else:
        model = model_tag.split(":")[0]
        target = _local(settings, cfg, args.env, model, _model_deploy(model_tag))
        if args.strategy == "canary":
            target.notify = _notifier(settings)
            accuracy_cfg = target.canary_cfg.checks.accuracy
            # Imported here: its pandas and scikit-learn cost every other command 1.3 s.
            from deploy import accuracy

            # Made before the canary starts: it reads the logs from where they end now.
            extra = (
                (accuracy.for_model(target.dir, model_tag, accuracy_cfg),)
                if accuracy_cfg is not None
                else ()
            )
            target.canary(
                bento, model_tag, report=settings.reports_dir / "canary.md", extra_checks=extra
            )
            print((settings.reports_dir / "canary.md").read_text())
        elif args.strategy == "shadow":
            release = target.shadow(bento, model_tag)
            print(
                f"{args.env}: {model_tag} ({bento}) shadowing at {release.url}; compare with"
                f" `make shadow-report ENV={args.env} MODEL={model}`"
            )
            return 0
        else:
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
    model = args.model or settings.model
    if env.target == "kubernetes":
        assert env.kubernetes is not None
        name = kubernetes.stable_deployment(model)
        kubernetes.undo(env.kubernetes, name)
        print(f"{args.env}: deployment/{name} rolled back to its previous revision")
        return 0
    target = _local(settings, cfg, args.env, model)
    release = target.rollback()
    if env.promotes_model and release.model_tag:
        _promote(release.model_tag)
    print(f"{target.name}: rolled back to {release.bento} ({release.id}) at {target.url}")
    return 0


def cmd_unpin(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    target = _local(settings, cfg, args.env, args.model or settings.model)
    stable = target.unpin()
    print(f"{target.name}: {stable} answers at {target.url} again")
    return 0


def cmd_adopt(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    target = _local(settings, cfg, args.env, args.model or settings.model)
    done = target.adopt()
    print(
        f"{target.name}: supervisor {done['supervisor']} adopted"
        f" {', '.join(done['adopted']) or 'nothing'}"
        + (f"; started {', '.join(done['started'])} (not running)" if done["started"] else "")
    )
    return 0


def _scope(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> None:
    """`down` and `status` name environments and a model only to narrow what they cover: a name
    that matches nothing is a mistake, refused before anything stops (a typo must not read as
    "nothing running")."""
    unknown = [n for n in args.env if n not in cfg.environments]
    if unknown:
        raise UsageError(
            f"unknown environment {', '.join(map(repr, unknown))}: deploy/config.yaml has "
            + ", ".join(cfg.environments)
        )
    # A model deployed once counts even if its package has gone since: its releases may still run.
    known = set(available()) | {
        m for n in cfg.environments for m in state_models(settings.deploy_dir, n)
    }
    if args.model is not None and args.model not in known:
        raise UsageError(f"unknown model {args.model!r}: known are {', '.join(sorted(known))}")


def cmd_down(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    """Stop what the local target started: every environment and model, or only those named."""
    _scope(args, settings, cfg)
    names = args.env or sorted(
        {n for n, e in cfg.environments.items() if e.local}
        | {p.name for p in settings.deploy_dir.glob("*") if p.is_dir()}
    )
    for name in names:
        env = cfg.environments.get(name)
        if env is None or env.local is None:
            continue
        env = cfg.env(name, "local")
        env_dir = settings.deploy_dir / name
        # Releases from before models had their own addresses belong to no one model.
        if args.model is None and legacy_state(env_dir):
            stopped = LocalTarget(name, env, settings.deploy_dir, "*", state_dir=env_dir).down()
            print(f"{name}: " + (f"stopped {', '.join(stopped)}" if stopped else "nothing running"))
            migrate_legacy(env_dir)
        models = [args.model] if args.model else state_models(settings.deploy_dir, name)
        for model in models:
            stopped = LocalTarget(name, env, settings.deploy_dir, model).down()
            print(
                f"{name}/{model}: "
                + (f"stopped {', '.join(stopped)}" if stopped else "nothing running")
            )
    return 0


def cmd_status(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    """Each model in each local environment, checked now through its stable address and each
    release's /readyz: serving, degraded (why) or down. Exit 1 if anything deployed is not
    serving."""
    _scope(args, settings, cfg)
    ports = addresses.ports(cfg, addresses.package_deploys())
    unhealthy = False
    for name, env in cfg.environments.items():
        if env.local is None or (args.env and name not in args.env):
            continue
        if legacy_state(settings.deploy_dir / name):
            print(f"{name:<11} releases from before models had their own addresses: `make down`")
        deployed = state_models(settings.deploy_dir, name)
        for model in sorted({m for e, m in ports if e == name} | set(deployed)):
            if args.model is not None and model != args.model:
                continue
            port = ports.get((name, model)) or recorded_port(settings.deploy_dir, name, model)
            target = LocalTarget(name, env, settings.deploy_dir, model, port)
            st = target.status()
            live = st["live"]
            what = f"{live['id']} {live['bento']} (model {live['model_tag']})" if live else ""
            verdict = st["verdict"]
            unhealthy |= verdict in ("degraded", "down", "broken")
            print(f"{name:<11} {model:<16} {st['url']:<24} {verdict:<12} {what}".rstrip())
            for reason in st["why"]:
                print(f"{'':<12}- {reason}")
            for rid, ready in st["releases"].items():
                print(f"{'':<12}  {rid}: {ready}")
    return EXIT_FAILED if unhealthy else 0


def cmd_shadow_report(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    target = _local(settings, cfg, args.env, args.model or settings.model)
    routing = target.routing()
    stable = routing.release(routing.stable) if routing else None
    shadow = routing.release(routing.shadow) if routing else None
    if routing is None or stable is None or shadow is None:
        raise UsageError(
            f"{target.name}: no shadow release: `make deploy ENV={args.env} STRATEGY=shadow`"
        )
    result = shadow_report.compare(
        shadow_report.read_jsonl(target.dir / "nginx" / "logs" / "access.log"),
        shadow_report.read_jsonl(target.dir / "nginx" / "logs" / "shadow.log"),
        shadow_report.read_jsonl(target.dir / "predictions.jsonl"),
        stable.model_tag,
        shadow.model_tag,
        shadow.id,
        shadow.port,
    )
    text = shadow_report.markdown(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


def cmd_smoke(args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig) -> int:
    url = args.target_url
    if not url.startswith("http"):
        url = _local(settings, cfg, url, args.model or settings.model).url
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"{url!r}: not a URL: {exc}") from None
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
    # One file per environment and model: two models' manifests never overwrite each other.
    path = args.out / args.env / f"{model_tag.split(':')[0]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
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
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    if args.model:  # the model alone, from training to the build
        if args.bento:
            raise UsageError("give a Bento or --model, not both")
        bento, model_tag = None, args.model
        registry.get(model_tag)
    else:
        bento, model_tag = _bento(args.bento)
    out = release.export(bento, model_tag, args.out)
    print(f"exported {bento or 'model'} {model_tag} to {out}")
    return 0


def cmd_import(
    args: argparse.Namespace, settings: Settings, cfg: deploy_config.DeployConfig
) -> int:
    if not args.src.is_dir():
        raise UsageError(f"{args.src}: no such release folder")
    rel = release.import_(args.src)
    if args.as_last_build and rel["bento"]:
        LAST_BUILD.parent.mkdir(parents=True, exist_ok=True)
        tmp = LAST_BUILD.with_name(LAST_BUILD.name + ".tmp")
        tmp.write_text(rel["bento"] + "\n")
        os.replace(tmp, LAST_BUILD)
    print(f"imported {rel['bento'] or 'model'} {rel['model_tag']}")
    if args.promote:  # an explicit promotion, never the stage the archive says
        _promote(rel["model_tag"])
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
    p = cli.ArgumentParser(
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
    d.add_argument("--model", help="refuse a Bento that serves another model (name)")
    d.add_argument(
        "--strategy",
        choices=["bluegreen", "canary", "shadow"],
        default="bluegreen",
        help="bluegreen: switch once ready (default); canary: move traffic in analysed steps"
        " (deploy/config.yaml canary); shadow: mirror traffic to it, never answer",
    )
    r = sub.add_parser("rollback", help="go back one release of one model")
    r.add_argument("env")
    r.add_argument("--target", choices=["local", "kubernetes"])
    r.add_argument("--model", help="the model to roll back (default: BENTOGATE_MODEL)")
    u = sub.add_parser("unpin", help="let a stable release pinned to the previous one answer again")
    u.add_argument("env")
    u.add_argument("--model", help="default: BENTOGATE_MODEL")
    ad = sub.add_parser(
        "adopt", help="after the supervisor died: a new one takes over what it left serving"
    )
    ad.add_argument("env")
    ad.add_argument("--model", help="default: BENTOGATE_MODEL")
    dn = sub.add_parser(
        "down", help="stop every service the local target started (or in ENV, of MODEL)"
    )
    dn.add_argument("env", nargs="*", help="default: every environment")
    dn.add_argument("--model", help="default: every model")
    st = sub.add_parser(
        "status", help="what each model serves in each local environment, and where"
    )
    st.add_argument("env", nargs="*", help="default: every environment")
    st.add_argument("--model", help="default: every model")
    sr = sub.add_parser("shadow-report", help="the shadow release vs the stable one, Markdown")
    sr.add_argument("env")
    sr.add_argument("--model", help="default: BENTOGATE_MODEL")
    sr.add_argument("--out", type=Path, default=get_settings().reports_dir / "shadow.md")
    s = sub.add_parser("smoke", help="smoke-test an environment (name) or a URL")
    s.add_argument("target_url", metavar="env|url")
    s.add_argument("--model-tag", help="the model tag that must answer")
    s.add_argument("--model", help="whose address in the environment (default: BENTOGATE_MODEL)")
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
    i.add_argument(
        "--promote", action="store_true", help="then promote its model (the previous production)"
    )
    n = sub.add_parser("notify", help="post the pipeline's outcome to Slack (if SLACK_WEBHOOK_URL)")
    n.add_argument("status", choices=["success", "failure", "cancelled", "skipped"])
    n.add_argument("what", help="what happened, e.g. the Bento and environment")
    n.add_argument("--link", help="URL of the run")
    return p


COMMANDS = {
    "deploy": cmd_deploy,
    "rollback": cmd_rollback,
    "unpin": cmd_unpin,
    "adopt": cmd_adopt,
    "down": cmd_down,
    "status": cmd_status,
    "smoke": cmd_smoke,
    "shadow-report": cmd_shadow_report,
    "manifests": cmd_manifests,
    "evidence": cmd_evidence,
    "approve": cmd_approve,
    "export": cmd_export,
    "import": cmd_import,
    "notify": cmd_notify,
}


@cli.refuses_bad_settings
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    try:
        cfg = deploy_config.load(settings.deploy_config)
        return COMMANDS[args.command](args, settings, cfg)
    except (ConfigError, UsageError, registry.RegistryError, release.ReleaseError) as exc:
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

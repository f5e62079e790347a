"""Where each model answers in each environment of the local target: its stable address.

A model's port is its environment's port (deploy/config.yaml) plus the model's
`deploy.port_offset` (models/<name>/config.yaml, default 0), unless the model names its own port
for that environment (`deploy.environments.<env>.port`). With the shipped ports: sales (offset 0)
answers at 127.0.0.1:3100 in staging and 127.0.0.1:3200 in production, a model with offset 1 at
3101 and 3201. `make new-model` gives each new model the next free offset.

Every model package's section is read whenever the addresses are needed, so two models on one
port, or a model naming an environment deploy/config.yaml does not have, are refused before
anything starts, naming file, line and field.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.yamlconf import ConfigError, where
from deploy.config import DeployConfig
from models import MODELS_DIR, available
from models.config import DeployConfig as ModelDeploy
from models.config import package_config


def package_deploys() -> dict[str, ModelDeploy]:
    """The `deploy` section of every model package under models/."""
    out = {}
    for name in available():
        cfg = package_config(name)
        out[name] = cfg.deploy if cfg is not None else ModelDeploy()
    return out


def _where(model: str, deploy: ModelDeploy, *loc: str) -> str:
    """`file:line: field` of a model's setting, or what it defaults to when the file omits it."""
    path = MODELS_DIR / model / "config.yaml"
    field = ".".join(("deploy", *loc))
    if loc == ("port_offset",) and "port_offset" not in deploy.model_fields_set:
        return f"{path if path.is_file() else 'model ' + model}: {field} (not set: 0)"
    return where(path, ("deploy", *loc)) if path.is_file() else f"model {model}: {field}"


def ports(cfg: DeployConfig, models: Mapping[str, ModelDeploy]) -> dict[tuple[str, str], int]:
    """Pure: (environment, model) -> port, for every environment with a local section. Raises
    ConfigError naming file, line and field on an unknown environment or a port used twice."""
    taken: dict[int, tuple[str, str, tuple[str, ...]]] = {}
    out: dict[tuple[str, str], int] = {}
    for model, deploy in sorted(models.items()):
        for env_name in deploy.environments:
            if env_name not in cfg.environments:
                raise ConfigError(
                    f"{_where(model, deploy, 'environments', env_name)}: no environment {env_name!r} in"
                    f" deploy/config.yaml (there: {', '.join(sorted(cfg.environments))})"
                )
        for env_name, env in cfg.environments.items():
            if env.local is None:
                continue
            own = deploy.environments.get(env_name)
            loc: tuple[str, ...]  # the config keys that set the port, for the message
            if own is not None and own.port is not None:
                port, loc = own.port, ("environments", env_name, "port")
            else:
                port, loc = env.local.port + deploy.port_offset, ("port_offset",)
            if port > 65535:
                raise ConfigError(
                    f"{_where(model, deploy, *loc)}: port {port} in {env_name} is > 65535"
                )
            if port in taken:
                other_env, other, other_loc = taken[port]
                raise ConfigError(
                    f"{_where(model, deploy, *loc)}: port {port} in {env_name} is already {other}'s in"
                    f" {other_env} ({_where(other, models[other], *other_loc)}): give each model its own"
                    " deploy.port_offset"
                )
            taken[port] = (env_name, model, loc)
            out[(env_name, model)] = port
    return out

"""The router of one model in one environment: nginx (Debian's package), configured from the routing
file (routing.py). `render` is pure: routing in, nginx.conf out. `check` runs `nginx -t` on it.

nginx runs in the foreground as the supervisor's child (`daemon off`), with its own prefix, pid
file, logs and temp directories under the state directory: a system nginx is never touched.

What the configuration does, per request:
- limits before anything is buffered: body size (413), body and header timeouts, connections
  (429 with Retry-After); every error nginx itself answers has the API's JSON error shape.
- `x-model-version: <release id | model tag | version>` pins the request to that release (no
  fallback: the client asked for it); an unknown one gets 404 naming the live versions.
- no header: the stable release, within the time budget; late (504), gone (502) or not ready (503),
  and the previous release answers instead. Headers `x-bentogate-routed-to` and
  `x-bentogate-release` (answered by) say which; the release's own `x-model-tag` says which model.
- upstream, `x-bentogate-routed-to: <release id>` names the release meant, so a release answering
  as the backup logs its predictions with fallback=true (serving/predlog.py). Every path (POST
  /predict, POST /feedback, ...) takes the same route: the stable release, then the previous.
- one JSON line per request in access.log (escape=json: no input forges a line) with the request
  id, routed-to, answered-by and the upstream times.
"""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
from pathlib import Path

from deploy.routing import RoutedRelease, Routing

NGINX = "nginx"
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
INSTALL_HINT = (
    "nginx is not installed: run `make router-deps` as root (apt-get install nginx), or"
    " `sudo apt-get install -y nginx` (Debian/Ubuntu), `brew install nginx` (macOS)"
)


class RouterConfigError(RuntimeError):
    """`nginx -t` refused the rendered configuration (a bug in render, or a bad routing file)."""


def binary() -> str | None:
    return shutil.which(NGINX) or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def _error(message: str) -> str:
    """The API's error body (serving/errors.py), as an nginx string literal."""
    problem = {"field": None, "error": message, "expected": None}
    text = json.dumps({"error": message, "field": None, "expected": None, "errors": [problem]})
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def paths(prefix: Path) -> dict[str, Path]:
    return {
        "conf": prefix / "nginx.conf",
        "pid": prefix / "nginx.pid",
        "error_log": prefix / "logs" / "error.log",
        "access_log": prefix / "logs" / "access.log",
        "shadow_log": prefix / "logs" / "shadow.log",
    }


def render(
    routing: Routing,
    prefix: Path,
    user: str | None = None,
    addresses: dict[str, str] | None = None,
    listen: str | None = None,
) -> str:
    """nginx.conf for `routing`, all files under `prefix`. Pure. `addresses`: release id ->
    "host:port" where nginx reaches it (default: the routing file's host and the release's
    port; Kubernetes: its Service's DNS name, on the release's port); `listen`: the router's
    own address (default: the routing file's host and port)."""
    lim = routing.limits
    p = paths(prefix)
    host = routing.host
    where_is = addresses or {}

    def at(r: RoutedRelease) -> str:
        return where_is.get(r.id, f"{host}:{r.port}")

    routed = routing.routed()
    versions = routing.versions()
    live = ", ".join(sorted({r.id for r in routed} | {r.model_tag for r in routed})) or "none"
    where = f"{routing.model} in {routing.environment}"
    stable = routing.release(routing.stable)
    previous = routing.release(routing.previous)

    upstreams = []
    for r in routed:
        # One per release, for requests pinned to it by x-model-version.
        upstreams.append(
            f"    upstream bg_{r.id} {{\n        server {at(r)};\n        keepalive 32;\n    }}"
        )
    version_map = "\n".join(f"        {_quote(k)} bg_{v};" for k, v in sorted(versions.items()))
    version_ids = "\n".join(f"        {_quote(k)} {v};" for k, v in sorted(versions.items()))
    # By port, the last in the list: nginx logs the address it resolved (an IP in Kubernetes).
    answered = "\n".join(f'        "~:{r.port}$" {r.id};' for r in routed)
    temp = "\n".join(
        f"    {name}_temp_path {prefix / 'temp' / name};"
        for name in ("client_body", *TEMP_DIRS[1:])
    )
    budget = f"{lim.budget_ms}ms" if lim.budget_ms is not None else f"{lim.read_timeout_s:g}s"

    canary = routing.release(routing.canary.release) if routing.canary else None
    canary_http = ""
    if stable is None:
        default_route = f"return 503 {_error(f'no release of {where} is serving')};"
    else:
        # The stable release, then the previous one as a backup: late (the budget), refused,
        # 502/503/504, and nginx asks the previous release; a failure also takes the stable one
        # out of the default route for fail_timeout (passive health; needs the second server).
        # Pinned to the previous release (a sustained budget miss): it alone answers.
        first, second = stable, previous
        if routing.fallback is not None and previous is not None:
            first, second = previous, None
        # The backup is the last resort: never marked down (max_fails=0), so a slow answer of
        # its own does not leave the route with no server at all (502).
        backup = f"\n        server {at(second)} max_fails=0 backup;" if second is not None else ""
        health = " max_fails=1 fail_timeout=2s" if second is not None else ""
        upstreams.append(
            f"    upstream bg_default {{\n        server {at(first)}{health};{backup}"
            "\n        keepalive 32;\n    }"
        )
        upstream, routed_id, retry = "bg_default", first.id, ""
        if canary is not None and routing.canary is not None and routing.canary.weight > 0:
            # STRATEGY=canary: a share of these requests to the canary, the stable release its
            # backup (late, refused, or any 5xx: the client never sees the canary fail).
            upstreams.append(
                f"    upstream bg_canary {{\n        server {at(canary)}"
                f" max_fails=1 fail_timeout=2s;\n        server {at(stable)} max_fails=0 backup;"
                "\n        keepalive 32;\n    }"
            )
            sticky = routing.canary.sticky_header
            key = "$request_id"
            if sticky:
                var = "$http_" + sticky.lower().replace("-", "_")
                key = "$bg_canary_key"
                canary_http += f"""
    map {var} $bg_canary_key {{
        "" $request_id;
        default {var};
    }}"""
            weight = routing.canary.weight
            split = '* "1";' if weight == 100 else f'{weight}% "1";\n        * "";'
            canary_http += f"""
    split_clients "{key}" $bg_canary_pick {{
        {split}
    }}
    map $bg_canary_pick $bg_default_up {{
        "1" bg_canary;
        default bg_default;
    }}
    map $bg_canary_pick $bg_default_id {{
        "1" {canary.id};
        default {first.id};
    }}"""
            upstream, routed_id, retry = "$bg_default_up", "$bg_default_id", " http_500"
        default_route = f"""set $bg_routed {routed_id};
            proxy_pass http://{upstream};
            proxy_read_timeout {budget};
            proxy_send_timeout {budget};
            proxy_next_upstream error timeout http_502 http_503 http_504{retry} non_idempotent;MIRROR"""
    shadow = routing.release(routing.shadow) if stable is not None else None
    mirror, shadow_location, shadow_http = "", "", ""
    if shadow is not None:
        # nginx's mirror: a subrequest whose answer is discarded. Short timeouts: the client's
        # connection is finalized only once the mirror is done (REFERENCE.md 7.3).
        share = lim.shadow_percent
        split = '* "1";' if share == 100 else f'{share}% "1";\n        * "";'
        shadow_http = f"""
    upstream bg_shadow {{
        server {at(shadow)};
        keepalive 8;
    }}
    split_clients "${{request_id}}" $bg_shadow_on {{
        {split}
    }}"""
        mirror = "\n            mirror /__bg_shadow;\n            mirror_request_body on;"
        shadow_location = f"""
        location = /__bg_shadow {{
            internal;
            # Its own log and format: a subrequest shares the client request's variables, and
            # evaluating $bg_answered here would cache the wrong release for the client's line.
            log_subrequest on;
            access_log {p["shadow_log"]} bg_shadow;
            if ($bg_shadow_on = "") {{
                return 204;
            }}
            proxy_pass http://bg_shadow$request_uri;
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_set_header X-Request-Id $bg_request_id;
            proxy_set_header X-Bentogate-Shadow "1";
            proxy_connect_timeout 200ms;
            proxy_read_timeout {budget};
            proxy_send_timeout {budget};
        }}"""
    user_line = f"user {user};" if user else ""
    return f"""# Rendered by deploy/nginx.py from {routing.environment}/{routing.model}/routing.json
# (generation {routing.generation}): edit the routing file, never this one.
daemon off;
master_process on;
worker_processes 1;
worker_shutdown_timeout 10s;
{user_line}
pid {p["pid"]};
error_log {p["error_log"]} warn;
events {{
    worker_connections {max(lim.max_connections + 64, 512) * 2};
}}
http {{
{temp}
    access_log off;
    server_tokens off;
    default_type application/json;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    client_max_body_size {lim.max_body_bytes};
    client_body_buffer_size 64k;
    client_body_timeout {lim.body_timeout_s:g}s;
    client_header_timeout {lim.header_timeout_s:g}s;
    large_client_header_buffers 4 16k;
    send_timeout 30s;
    limit_conn_zone $server_name zone=bg_conns:1m;
    limit_conn_status 429;
    proxy_http_version 1.1;
    proxy_buffering on;
    proxy_connect_timeout 1s;
    proxy_next_upstream off;

{chr(10).join(upstreams)}

    # x-model-version -> upstream of that release; "" -> stable (default route); else unknown.
    map $http_x_model_version $bg_pinned {{
        "" "";
{version_map}
        default unknown;
    }}
    map $http_x_model_version $bg_pinned_id {{
{version_ids}
        default "";
    }}
    # The release that answered, from the last upstream address tried.
    map $upstream_addr $bg_answered {{
{answered}
        default "";
    }}
{shadow_http}{canary_http}
    map $http_x_request_id $bg_request_id {{
        "" $request_id;
        default $http_x_request_id;
    }}
    # Retry-After on a 429 or 503 that has none (the release's own 429 carries its own).
    map "$status:$upstream_http_retry_after" $bg_retry_after {{
        "~^(429|503):$" {lim.retry_after_s};
        default "";
    }}
    log_format bg_json escape=json '{{"time":"$time_iso8601","request_id":"$bg_request_id",'
        '"method":"$request_method","uri":"$request_uri","status":$status,'
        '"routed_to":"$bg_routed","answered_by":"$bg_answered","version":"$http_x_model_version",'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
        '"upstream_time":"$upstream_response_time","request_time":$request_time,'
        '"body_bytes":$body_bytes_sent,"client":"$remote_addr",'
        '"forwarded_for":"$proxy_add_x_forwarded_for"}}';
    log_format bg_shadow escape=json '{{"time":"$time_iso8601","request_id":"$bg_request_id",'
        '"shadow":"{shadow.id if shadow else ""}","status":$status,'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
        '"upstream_time":"$upstream_response_time"}}';

    server {{
        listen {listen or f"{host}:{routing.port}"} reuseport backlog=4096;
        access_log {p["access_log"]} bg_json;
        limit_conn bg_conns {lim.max_connections};
        set $bg_routed "";

        proxy_set_header Host $host;
        proxy_set_header Connection "";
        proxy_set_header X-Request-Id $bg_request_id;
        # The release meant (stable, or the pinned version): one answering as the backup logs
        # its prediction as a fallback. Replaces a client's header of that name.
        proxy_set_header X-Bentogate-Routed-To $bg_routed;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout {lim.read_timeout_s:g}s;
        proxy_send_timeout {lim.read_timeout_s:g}s;
        add_header X-Bentogate-Routed-To $bg_routed always;
        add_header X-Bentogate-Release $bg_answered always;
        add_header X-Request-Id $bg_request_id always;
        add_header Retry-After $bg_retry_after always;

        error_page 413 @too_large;
        error_page 429 @too_many;
        error_page 400 408 @bad_request;
        error_page 502 @unreachable;
        error_page 503 @unavailable;
        error_page 504 @late;
        error_page 418 = @pinned;

        location / {{
            if ($bg_pinned) {{
                return 418;
            }}
            {default_route.replace("MIRROR", mirror)}
        }}{shadow_location}
        location @pinned {{
            if ($bg_pinned = unknown) {{
                return 404 {_error(f"x-model-version: no live release of {where} is that version (live: {live})")};
            }}
            set $bg_routed $bg_pinned_id;
            proxy_pass http://$bg_pinned;
        }}
        location @too_large {{
            return 413 {_error(f"body: over the router's limit of {lim.max_body_bytes} bytes")};
        }}
        location @too_many {{
            return 429 {_error("too many connections to the router: retry after the Retry-After header's seconds")};
        }}
        location @unreachable {{
            return 502 {_error(f"no release of {where} could be reached")};
        }}
        location @unavailable {{
            return 503 {_error(f"no release of {where} is ready: retry after the Retry-After header's seconds")};
        }}
        location @late {{
            return 504 {_error(f"no release of {where} answered in time")};
        }}
        location @bad_request {{
            return 400 {_error("the request could not be read (malformed, or too slow to arrive)")};
        }}
    }}
}}
"""


def owner(directory: Path) -> str | None:
    """The user nginx's workers run as when it starts as root: the owner of its state directory
    (the user who deploys), so they can write its temp directories. None when not root."""
    import os

    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(directory.stat().st_uid).pw_name


def running_pid(prefix: Path) -> int | None:
    """The master's pid, from the pid file nginx keeps under its prefix (None if none)."""
    try:
        return int(paths(prefix)["pid"].read_text().strip())
    except (OSError, ValueError):
        return None


def prepare(prefix: Path) -> None:
    for name in TEMP_DIRS:
        (prefix / "temp" / name).mkdir(parents=True, exist_ok=True)
    (prefix / "logs").mkdir(parents=True, exist_ok=True)


def command(prefix: Path, conf: Path, *extra: str) -> list[str]:
    nginx = binary()
    if nginx is None:
        raise FileNotFoundError(INSTALL_HINT)
    return [
        nginx,
        "-p",
        str(prefix),
        "-c",
        str(conf),
        "-e",
        str(paths(prefix)["error_log"]),
        *extra,
    ]


def check(prefix: Path, conf: Path) -> None:
    """`nginx -t` on `conf`; raises RouterConfigError with nginx's own words."""
    prepare(prefix)
    result = subprocess.run(
        command(prefix, conf, "-t", "-q"), capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise RouterConfigError(f"nginx -t refused {conf}: {result.stderr.strip()}")


def check_rendered(routing: Routing, prefix: Path) -> None:
    """`nginx -t` on what `routing` renders to, leaving the live configuration alone."""
    prepare(prefix)
    candidate = prefix / "nginx.conf.check"
    candidate.write_text(render(routing, prefix, owner(prefix)))
    try:
        check(prefix, candidate)
    finally:
        candidate.unlink(missing_ok=True)


def write_checked(routing: Routing, prefix: Path) -> Path:
    """Render, check with `nginx -t` beside the live file, then put it in place atomically."""
    prepare(prefix)
    conf = paths(prefix)["conf"]
    candidate = conf.with_name("nginx.conf.next")
    candidate.write_text(render(routing, prefix, owner(prefix)))
    check(prefix, candidate)
    candidate.replace(conf)
    return conf

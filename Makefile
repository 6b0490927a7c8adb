# meta_deployer: every target creates .venv on first use. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export META_DEPLOYER_ROOT ?= $(CURDIR)
export DAGSTER_HOME       ?= $(CURDIR)/.dagster_home
INSTANCE  := $(DAGSTER_HOME)/dagster.yaml
DAGSTER_HOST ?= 127.0.0.1
DAGSTER_PORT ?= 3000
export DAGSTER_PORT
# The REST API (make api; make dev starts it too).
API_HOST ?= 127.0.0.1
API_PORT ?= 3001
export API_HOST API_PORT
# Reloads go to the webserver `make dev` starts, on whatever port it was given.
export DAGSTER_WEBSERVER_URL ?= http://localhost:$(DAGSTER_PORT)
WORKSPACE := $(or $(META_DEPLOYER_WORKSPACE),workspace/workspace.yaml)
DEFS      := -m meta_deployer.definitions

# User arguments reach the CLI as environment variables, never spliced into a shell line. Make
# would expand a `$(shell ...)` inside a command-line or environment value when it exports it, so
# each is first pinned to its literal text ($(value ...) into a simply expanded variable).
USER_ARGS := REPO_URL REPO_NAME BRANCH PYTHON_FILE MODULE_NAME WORKING_DIRECTORY PURGE FOLLOW DRY_RUN META_DEPLOYER_DAGSTER_URL TO SCOPES
$(foreach v,$(USER_ARGS),$(eval override $(v) := $$(value $(v))))
export $(USER_ARGS)

# Run a job with a validated run config: $(call run_job,<job>,<run-config args>)
# With DRY_RUN=1 it prints the plan instead and changes nothing. With META_DEPLOYER_DAGSTER_URL set
# the run is launched on that instance over GraphQL and followed (`meta-deployer submit`).
define run_job
	@set -euo pipefail; if [ -n "$${DRY_RUN:-}" ] && [ "$${DRY_RUN}" != 0 ]; then exec $(BIN)/meta-deployer dry-run $(2); fi; \
	if [ -n "$${META_DEPLOYER_DAGSTER_URL:-}" ]; then exec $(BIN)/meta-deployer submit $(2); fi; \
	cfg=$$(mktemp -t meta-deployer-XXXXXX.yaml); tags=$$(mktemp -t meta-deployer-XXXXXX.json); \
	trap 'rm -f "$$cfg" "$$tags"' EXIT; \
	$(BIN)/meta-deployer run-config $(2) --tags-out "$$tags" > "$$cfg"; \
	$(BIN)/dagster job execute $(DEFS) -j $(1) -c "$$cfg" --tags "$$(cat "$$tags")"
endef

.PHONY: help install dev api api-token rollback-repo dev-with-repos add-repo dev-add-repo update-repo remove-repo list-repos repo-logs sync-repos validate bootstrap platform platform-down platform-local platform-local-down test bench clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet 'uv>=0.9,<1'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	@# Bytecode for everything, once: where PYTHONDONTWRITEBYTECODE is set, Python would otherwise
	@# compile Dagster from source in every process (about 2 s of each `dagster job execute`).
	@$(BIN)/python -m compileall -q -j 0 meta_deployer meta_deployer_runtime \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	@# workspace/workspace.yaml is generated; keep local changes to it out of commits.
	@git update-index --skip-worktree workspace/workspace.yaml 2>/dev/null || true
	@touch $@

install: $(INSTALLED) ## Create .venv and install the project

$(INSTANCE): dagster.yaml
	@mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $@

dev: $(INSTALLED) $(INSTANCE) ## Run Dagster (webserver + daemon) on http://localhost:3000 with every deployed repo's code server (started/adopted; stopped on exit), and the REST API on :3001
	@# The API runs beside Dagster and stops with it (Ctrl-C, or Dagster exiting).
	@set -uo pipefail; $(BIN)/meta-deployer api & api=$$!; \
	trap 'kill $$api 2>/dev/null; wait $$api 2>/dev/null' EXIT INT TERM; \
	$(BIN)/meta-deployer dev -w $(WORKSPACE) -H $(DAGSTER_HOST) -p $(DAGSTER_PORT)

api: $(INSTALLED) ## The REST API alone (API_HOST=127.0.0.1 API_PORT=3001), talking to DAGSTER_WEBSERVER_URL
	@exec $(BIN)/meta-deployer api

api-token: $(INSTALLED) ## Create an API token: SCOPES=admin|read|repo:<name>[,...]; prints it once, on the last line
	@$(BIN)/meta-deployer api-token

dev-with-repos: $(INSTALLED) $(INSTANCE) ## Queue an update_repo run per repo in repos/ not yet deployed or moved (dev platform), then make dev (its daemon deploys them)
	META_DEPLOYER_PLATFORM=dev $(BIN)/dagster job execute $(DEFS) -j sync_repos
	@$(MAKE) --no-print-directory dev

add-repo: $(INSTALLED) $(INSTANCE) ## Add a repo: REPO_URL= REPO_NAME= [BRANCH=] [WORKING_DIRECTORY=] [PYTHON_FILE=]
	$(call run_job,add_repo,add)

dev-add-repo: $(INSTALLED) $(INSTANCE) ## add-repo on the dev platform: REPO_URL= REPO_NAME=
	@META_DEPLOYER_PLATFORM=dev $(MAKE) --no-print-directory add-repo

update-repo: $(INSTALLED) $(INSTANCE) ## Redeploy a repo from its config and branch head: REPO_NAME=
	$(call run_job,update_repo,update)

rollback-repo: $(INSTALLED) $(INSTANCE) ## Serve an earlier successful deployment again: REPO_NAME= TO=<deployment id or commit>
	$(call run_job,rollback_repo,rollback)

remove-repo: $(INSTALLED) $(INSTANCE) ## Remove a repo's location (data kept unless PURGE=1): REPO_NAME=
	$(call run_job,remove_repo,remove)

list-repos: $(INSTALLED) ## Show every repo: URL, branch, deployed commit, platform, status, endpoint
	@$(BIN)/meta-deployer list-repos

repo-logs: $(INSTALLED) ## Show a repo's code server output: REPO_NAME= [FOLLOW=1]
	@$(BIN)/meta-deployer repo-logs

sync-repos: $(INSTALLED) $(INSTANCE) ## Queue one update_repo run per repo whose branch head or config moved (a daemon, e.g. make dev, deploys them)
	@if [ -n "$${META_DEPLOYER_DAGSTER_URL:-}" ]; then exec $(BIN)/meta-deployer submit sync; fi; \
	$(BIN)/dagster job execute $(DEFS) -j sync_repos

validate: $(INSTALLED) ## Check every repos/<name>/config.yml before you commit it
	@$(BIN)/meta-deployer validate

bootstrap: $(INSTALLED) ## ECS: create the shared AWS pieces (bucket layout, cluster, namespace, execution role); DRY_RUN=1 prints them
	@$(BIN)/meta-deployer bootstrap

platform: $(INSTALLED) ## ECS: the webserver, daemon and deployer services, their EFS workspace, roles and log groups; DRY_RUN=1 prints the plan
	@$(BIN)/meta-deployer platform up

platform-down: $(INSTALLED) ## ECS: remove the platform's services (EFS, bucket and log groups kept; PURGE=1 removes EFS, log groups and roles)
	@$(BIN)/meta-deployer platform down

platform-local: $(INSTALLED) ## Rehearse the production topology on the local engine: 2 webservers, daemon, deployer, Postgres; META_DEPLOYER_CONFIG_GIT_URL= (configs)
	@bash -c '. .ci/services.sh && exec $(BIN)/meta-deployer platform-local up'

platform-local-down: $(INSTALLED) ## Remove the rehearsal's containers (volumes, database and bucket kept; PURGE=1 removes the volumes)
	@bash -c '. .ci/services.sh && exec $(BIN)/meta-deployer platform-local down'

test: $(INSTALLED) ## Run every test
	$(BIN)/pytest

bench: $(INSTALLED) ## Run the benchmarks in bench/ (ratios, side by side)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python "$$b" || exit 1; done

clean: ## Remove generated state (dev code servers stopped, checkouts, venvs, instance); repos/ and data in S3 are kept
	@if [ -x $(BIN)/meta-deployer ]; then $(BIN)/meta-deployer dev-servers down || true; fi
	rm -rf .meta_deployer/checkouts .meta_deployer/venvs .meta_deployer/locations .meta_deployer/state .meta_deployer/servers $(DAGSTER_HOME)
	git checkout -- workspace/workspace.yaml 2>/dev/null || true

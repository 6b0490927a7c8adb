# shellcheck shell=bash
# Real parts for the docker tests: a Docker engine, a local image registry and a
# local Python base image. Sourced by .ci/run (as root, on a fresh machine) before
# `make test`; a developer may source it too. Idempotent: a second source only
# checks that everything answers and re-exports the variables (about a second).
#
# Exports:
#   DOCKER_HOST                    unix socket of our own dockerd
#   META_DEPLOYER_TEST_REGISTRY    127.0.0.1:<port> of the local registry (tests push there)
#   MD_DOCKER_TCP                  tcp://127.0.0.1:<port>, the same engine over TCP (containers on the
#                                  host network reach it there: the platform rehearsal's build host)
#   MD_POSTGRES_URL                a Postgres database for Dagster instances (Debian's postgresql;
#                                  the role may create databases, one per test)
#
# To stop what it started: kill "$(cat <dir>/dockerd.pid)" "$(cat <dir>/registry.pid)".
# A cold run (packages, debootstrap, base image) takes about 1.5 minutes here.
#
# Knobs (environment, all optional):
#   MD_SERVICES_DIR      where the engine, registry and caches live (default /var/lib/md-docker)
#   MD_REGISTRY_PORT     registry port on 127.0.0.1 (default 5000)
#   MD_BASE_IMAGE_TAG    tag of the local Python base image (default python:3.12-slim)
#   MD_DEBIAN_SUITE      suite debootstrapped for the base image (default bookworm)
#   MD_DOCKER_TCP_PORT   the engine's TCP port on 127.0.0.1 (default 2375)
#
# Why each part looks the way it does (see ../shared/DESIGN.md):
#   - no public image registry is reachable here, so the Python base image is
#     debootstrapped from the machine's own Debian mirror and tagged
#     python:3.12-slim, so that a repository's `FROM python:3.12-slim` builds;
#     its Python is Debian's python3 (3.11 on bookworm) in a virtualenv on PATH
#     so that `python` and `pip install` behave as in the official image;
#   - package downloads go through a proxy with its own CA: the host's CA bundle
#     is copied into the image and pip is pointed at it;
#   - the engine runs with no bridge and no iptables rules: containers use host
#     networking, and nothing gets a private-range address.

md_services__log() { printf '[services] %s\n' "$*" >&2; }

md_services__install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v socat >/dev/null 2>&1 || missing+=(socat)
    # The server itself (the client package alone brings pg_ctlcluster and /usr/lib/postgresql/<v>/bin).
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
    if [ "${#missing[@]}" -gt 0 ]; then
        md_services__log "installing ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The first Debian mirror URI in /etc/apt/sources.list.d (deb822 .sources or
# one-line .list files), falling back to /etc/apt/sources.list.
md_services__mirror() {
    local uri=""
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '
            /^[[:space:]]*$/ { if (uri != "" && debian) { print uri; exit } uri=""; debian=0; next }
            /^URIs:/ { uri=$2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i !~ /-security$/) debian=1 }
            END { if (uri != "" && debian) print uri }
        ' "$f" 2>/dev/null | head -n1) || true
        [ -n "$uri" ] && break
    done
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null |
            awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }') || true
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

md_services__engine_up() { docker --host "$DOCKER_HOST" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

md_services__start_engine() {
    if md_services__engine_up; then
        return 0
    fi
    md_services__log "starting dockerd on $DOCKER_HOST"
    mkdir -p "$MD_SERVICES_DIR/data" "$MD_SERVICES_DIR/exec"
    # A stale pid file from a killed daemon stops a new one from starting.
    if [ -f "$MD_SERVICES_DIR/dockerd.pid" ] && ! kill -0 "$(cat "$MD_SERVICES_DIR/dockerd.pid")" 2>/dev/null; then
        rm -f "$MD_SERVICES_DIR/dockerd.pid" "$MD_SERVICES_DIR/docker.sock"
    fi
    setsid nohup dockerd \
        --host "$DOCKER_HOST" \
        --data-root "$MD_SERVICES_DIR/data" \
        --exec-root "$MD_SERVICES_DIR/exec" \
        --pidfile "$MD_SERVICES_DIR/dockerd.pid" \
        --host "$MD_DOCKER_TCP" \
        --bridge=none --iptables=false --ip-masq=false \
        >>"$MD_SERVICES_DIR/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 120); do
        md_services__engine_up && return 0
        sleep 0.5
    done
    md_services__log "dockerd did not answer within 60s; last lines of $MD_SERVICES_DIR/dockerd.log:"
    tail -n 20 "$MD_SERVICES_DIR/dockerd.log" >&2
    return 1
}

md_services__tcp_up() { docker --host "$MD_DOCKER_TCP" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# An engine started before it listened on TCP too: forward the port to its socket.
md_services__start_tcp() {
    md_services__tcp_up && return 0
    md_services__log "forwarding $MD_DOCKER_TCP to $DOCKER_HOST"
    setsid nohup socat "TCP-LISTEN:${MD_DOCKER_TCP##*:},bind=127.0.0.1,fork,reuseaddr" \
        "UNIX-CONNECT:${DOCKER_HOST#unix://}" >>"$MD_SERVICES_DIR/socat.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 20); do
        md_services__tcp_up && return 0
        sleep 0.5
    done
    md_services__log "the engine does not answer on $MD_DOCKER_TCP"
    return 1
}

# Debian's PostgreSQL cluster on 127.0.0.1:5432, a role `dagster` (password `dagster`, may create
# databases) and its database `dagster`.
md_services__start_postgres() {
    local version
    version=$(basename "$(dirname "$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n1)")")")
    if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
        pg_createcluster "$version" main >/dev/null
    fi
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
        md_services__log "starting PostgreSQL $version"
        pg_ctlcluster "$version" main start
    fi
    local psql=(runuser -u postgres -- psql -qtAX)
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'dagster'")" != 1 ]; then
        "${psql[@]}" -c "CREATE ROLE dagster LOGIN CREATEDB PASSWORD 'dagster'" >/dev/null
    fi
    if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'dagster'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE dagster OWNER dagster" >/dev/null
    fi
}

md_services__registry_up() { curl -fsS -o /dev/null "http://127.0.0.1:$MD_REGISTRY_PORT/v2/" 2>/dev/null; }

md_services__start_registry() {
    if md_services__registry_up; then
        return 0
    fi
    md_services__log "starting docker-registry on 127.0.0.1:$MD_REGISTRY_PORT"
    mkdir -p "$MD_SERVICES_DIR/registry"
    cat >"$MD_SERVICES_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $MD_SERVICES_DIR/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$MD_REGISTRY_PORT
EOF
    setsid nohup docker-registry serve "$MD_SERVICES_DIR/registry.yml" \
        >>"$MD_SERVICES_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$MD_SERVICES_DIR/registry.pid"
    local i
    for i in $(seq 1 60); do
        md_services__registry_up && return 0
        sleep 0.5
    done
    md_services__log "docker-registry did not answer within 30s; last lines of $MD_SERVICES_DIR/registry.log:"
    tail -n 20 "$MD_SERVICES_DIR/registry.log" >&2
    return 1
}

md_services__base_image() {
    if docker image inspect "$MD_BASE_IMAGE_TAG" >/dev/null 2>&1; then
        return 0
    fi
    local raw="md-debian-$MD_DEBIAN_SUITE:minbase"
    local cache="$MD_SERVICES_DIR/cache/rootfs-$MD_DEBIAN_SUITE.tar"
    if ! docker image inspect "$raw" >/dev/null 2>&1; then
        if [ ! -s "$cache" ]; then
            local mirror rootfs
            mirror=$(md_services__mirror)
            rootfs="$MD_SERVICES_DIR/cache/rootfs-build"
            md_services__log "debootstrap $MD_DEBIAN_SUITE from $mirror (about a minute, cached afterwards)"
            rm -rf "$rootfs"
            mkdir -p "$rootfs"
            if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,git,passwd \
                "$MD_DEBIAN_SUITE" "$rootfs" "$mirror" >"$MD_SERVICES_DIR/debootstrap.log" 2>&1; then
                md_services__log "debootstrap failed; last lines of $MD_SERVICES_DIR/debootstrap.log:"
                tail -n 20 "$MD_SERVICES_DIR/debootstrap.log" >&2
                return 1
            fi
            # The proxy's CA: without it nothing inside the image can reach PyPI.
            cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
            rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
            tar -C "$rootfs" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
            rm -rf "$rootfs"
        fi
        md_services__log "importing $cache as $raw"
        docker import "$cache" "$raw" >/dev/null
    fi
    local ctx
    ctx=$(mktemp -d)
    cat >"$ctx/Dockerfile" <<EOF
FROM $raw
# Behave like the official python image: python and pip on PATH, pip allowed to
# install (Debian's own python3 is "externally managed"), certificates found.
RUN python3 -m venv /usr/local/python \\
 && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndisable-pip-version-check = true\n' > /etc/pip.conf
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python --version && pip --version
CMD ["python3"]
EOF
    md_services__log "building $MD_BASE_IMAGE_TAG"
    if ! docker build -q --network host -t "$MD_BASE_IMAGE_TAG" "$ctx" >"$MD_SERVICES_DIR/base-image.log" 2>&1; then
        rm -rf "$ctx"
        md_services__log "building $MD_BASE_IMAGE_TAG failed; last lines of $MD_SERVICES_DIR/base-image.log:"
        tail -n 20 "$MD_SERVICES_DIR/base-image.log" >&2
        return 1
    fi
    rm -rf "$ctx"
}

md_services__main() {
    MD_SERVICES_DIR="${MD_SERVICES_DIR:-/var/lib/md-docker}"
    MD_REGISTRY_PORT="${MD_REGISTRY_PORT:-5000}"
    MD_BASE_IMAGE_TAG="${MD_BASE_IMAGE_TAG:-python:3.12-slim}"
    MD_DEBIAN_SUITE="${MD_DEBIAN_SUITE:-bookworm}"
    export DOCKER_HOST="unix://$MD_SERVICES_DIR/docker.sock"
    export META_DEPLOYER_TEST_REGISTRY="127.0.0.1:$MD_REGISTRY_PORT"
    export MD_DOCKER_TCP="tcp://127.0.0.1:${MD_DOCKER_TCP_PORT:-2375}"
    export MD_POSTGRES_URL="postgresql://dagster:dagster@127.0.0.1:5432/dagster"
    mkdir -p "$MD_SERVICES_DIR/cache"
    md_services__install_packages || return 1
    md_services__start_engine || return 1
    md_services__start_tcp || return 1
    md_services__start_registry || return 1
    md_services__start_postgres || return 1
    md_services__base_image || return 1
    md_services__log "ready: DOCKER_HOST=$DOCKER_HOST META_DEPLOYER_TEST_REGISTRY=$META_DEPLOYER_TEST_REGISTRY MD_DOCKER_TCP=$MD_DOCKER_TCP MD_POSTGRES_URL=$MD_POSTGRES_URL"
}

md_services__main

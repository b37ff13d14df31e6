#!/usr/bin/env bash
# Makes the stack's local secrets with openssl alone (no network, no ACME):
#
#   ca.crt / ca.key              a local certificate authority (kept across runs:
#                                trust ca.crt once in your browser / OS)
#   wildcard.crt / wildcard.key  *.DOMAIN and DOMAIN, signed by that CA (Traefik)
#   htpasswd                     basic-auth entry for the admin dashboards (Traefik)
#   basic-auth-password          the password in that entry, when generated here
#   stack.env                    every other password and key of the stack, random
#                                (docker compose --env-file infra/secrets/stack.env)
#   redis.conf                   Redis's `requirepass`, from REDIS_PASSWORD in stack.env
#   metrics.token                Prometheus' scrape token for the gateway, from
#                                MYSPINBOT_METRICS_TOKEN in stack.env
#
# Usage: infra/provision_secrets.sh [--domain D] [--out DIR] [--user U] [--force]
#   --domain   default: $DOMAIN or myspinbot.local
#   --out      default: infra/secrets (mounted by compose as SECRETS_DIR)
#   --user     basic-auth user, default: $BASIC_AUTH_USER or admin
#   --force    also replace an existing CA (you must trust the new one again)
# The basic-auth password is $BASIC_AUTH_PASSWORD, or a random one.
# Re-running keeps the CA and the password and re-issues the certificate.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
domain="${DOMAIN:-myspinbot.local}"
out="$here/secrets"
user="${BASIC_AUTH_USER:-admin}"
force=0

while [ $# -gt 0 ]; do
    case "$1" in
        --domain) domain="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --user) user="$2"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

# A DNS name of at least two labels: it becomes part of certificate extensions.
if ! [[ "$domain" =~ ^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]]; then
    echo "not a valid domain: $domain" >&2
    exit 2
fi
if ! [[ "$user" =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "not a valid user name: $user" >&2
    exit 2
fi

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
mkdir -p "$out"
# Only the owner may list or enter the directory: files that containers must read as
# a non-root user (redis.conf) are mounted one by one, and a bind mount of a single
# file does not need the directories above it to be open.
chmod 700 "$out"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- CA ----------------------------------------------------------------------------------
if [ "$force" = 1 ] || [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
    openssl req -x509 -new -nodes -sha256 -days 3650 \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
        -subj "/O=MySpinBot/CN=MySpinBot local CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    mv "$tmp/ca.key" "$out/ca.key"
    mv "$tmp/ca.crt" "$out/ca.crt"
    echo "created CA $out/ca.crt (trust it to browse https://*.$domain without warnings)"
else
    echo "keeping CA $out/ca.crt"
fi

# --- wildcard certificate -----------------------------------------------------------------
# 825 days: the longest validity Apple platforms accept for TLS server certificates.
cat > "$tmp/leaf.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:*.$domain, DNS:$domain
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tmp/wildcard.key" -out "$tmp/wildcard.csr" \
    -subj "/O=MySpinBot/CN=*.$domain" 2>/dev/null
openssl x509 -req -sha256 -days 825 -in "$tmp/wildcard.csr" \
    -CA "$out/ca.crt" -CAkey "$out/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$tmp/leaf.ext" -out "$tmp/wildcard.crt" 2>/dev/null
openssl verify -CAfile "$out/ca.crt" "$tmp/wildcard.crt" >/dev/null
mv "$tmp/wildcard.key" "$out/wildcard.key"
mv "$tmp/wildcard.crt" "$out/wildcard.crt"
echo "issued $out/wildcard.crt for *.$domain"

# --- basic auth -----------------------------------------------------------------------------
# apr1 (Apache MD5) is the strongest scheme both `openssl passwd` and Traefik's
# basicAuth support; the password itself is random and long.
password_file="$out/basic-auth-password"
if [ -n "${BASIC_AUTH_PASSWORD:-}" ]; then
    password="$BASIC_AUTH_PASSWORD"
    rm -f "$password_file"
elif [ -s "$password_file" ] && [ -s "$out/htpasswd" ]; then
    password="$(cat "$password_file")"
else
    password="$(openssl rand -base64 24 | tr -d '/+=\n')"
    printf '%s\n' "$password" > "$password_file"
    echo "generated the basic-auth password: $password_file"
fi
printf '%s:%s\n' "$user" "$(printf '%s' "$password" | openssl passwd -apr1 -stdin)" > "$out/htpasswd"
echo "wrote $out/htpasswd for user $user"

# --- service passwords ------------------------------------------------------------------
# The stack has no default password: compose requires each of these (${VAR:?}) and
# reads them from this file (--env-file). Re-running keeps existing values, so data
# volumes initialised with them keep working, and adds any the stack has gained since.
# Hex only: the values go into URLs (redis://:PASSWORD@redis) unescaped.
stack_env="$out/stack.env"
[ -f "$stack_env" ] || printf '# Generated by infra/provision_secrets.sh; keep it private. Compose reads it with\n# --env-file (see docs/deploy.md). Delete a line and re-run to rotate that value.\n' > "$stack_env"
secret_names=(
    POSTGRES_PASSWORD          # PostgreSQL superuser (the app's database URL)
    MINIO_ROOT_PASSWORD        # MinIO root: minio-init and the MinIO console only
    S3_APP_SECRET_KEY          # the app's own MinIO user, limited to its bucket
    REDIS_PASSWORD             # requirepass; the app and redis-exporter authenticate
    REDIS_INSIGHT_ENCRYPTION_KEY  # Redis Insight encrypts stored connection passwords
    GRAFANA_ADMIN_PASSWORD     # Grafana's admin account
    PGADMIN_PASSWORD           # pgAdmin's login
    OPEN_WEBUI_ADMIN_PASSWORD  # the chatbot profile: Open WebUI's admin account
    OPEN_WEBUI_SECRET_KEY      # the chatbot profile: signs Open WebUI's sessions
    MYSPINBOT_INTERNAL_TOKEN   # the gateway -> status function credential
    MYSPINBOT_METRICS_TOKEN    # Prometheus -> the gateway's /metrics (also metrics.token)
    TRITON_ADMIN_KEY           # Triton's model-repository API (header x-myspinbot-admin-key)
)
for name in "${secret_names[@]}"; do
    if ! grep -q "^$name=" "$stack_env"; then
        printf '%s=%s\n' "$name" "$(openssl rand -hex 24)" >> "$stack_env"
        echo "generated $name in $stack_env"
    fi
done

# Redis reads its password from a config file rather than the command line, where
# `ps` and `docker inspect` would show it. The redis image runs redis-server as the
# `redis` user, which must read this file through its bind mount: 0644 here, inside
# the 0700 directory.
redis_password="$(sed -n 's/^REDIS_PASSWORD=//p' "$stack_env")"
printf '# Generated by infra/provision_secrets.sh from REDIS_PASSWORD in stack.env.\nrequirepass %s\n' \
    "$redis_password" > "$out/redis.conf"
chmod 644 "$out/redis.conf"

# Prometheus reads the gateway's scrape token from a file (credentials_file); it runs as
# `nobody` in its container, so 0644 here, inside the 0700 directory, like redis.conf.
metrics_token="$(sed -n 's/^MYSPINBOT_METRICS_TOKEN=//p' "$stack_env")"
printf '%s\n' "$metrics_token" > "$out/metrics.token"
chmod 644 "$out/metrics.token"

# Traefik runs as root in its container and reads these through a read-only mount.
chmod 600 "$out"/*.key "$out/htpasswd" "$stack_env"
chmod 644 "$out/ca.crt" "$out/wildcard.crt"

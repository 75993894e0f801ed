#!/bin/sh
# Render deploy/nginx/hypersonic-lb.conf.template and run nginx in the foreground.
#
#   LB_LISTEN=127.0.0.1:8080 UPSTREAM_1=127.0.0.1:8081 UPSTREAM_2=127.0.0.1:8082 \
#   LB_PREFIX=/tmp/hypersonic-lb deploy/nginx/run-lb.sh
#
# Environment (required unless a default is shown):
#   LB_LISTEN    address nginx listens on, e.g. 127.0.0.1:8080 or 80
#   UPSTREAM_1   first Hypersonic instance, host:port
#   UPSTREAM_2   second Hypersonic instance, host:port
#   LB_PREFIX    directory for the rendered config, pid file, error log, temp files
#                (created; must be writable)
#   LB_WORKERS   nginx worker processes [auto]
#   NGINX        nginx binary [/usr/sbin/nginx, else nginx on PATH]
#
# nginx runs with "daemon off" and is exec'd, so this script's PID is nginx's:
# stop it with SIGQUIT (graceful) or SIGTERM (fast). "-t" as the only argument
# only tests the rendered configuration.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template="$here/hypersonic-lb.conf.template"

: "${LB_LISTEN:?set LB_LISTEN (e.g. 127.0.0.1:8080)}"
: "${UPSTREAM_1:?set UPSTREAM_1 (host:port of the first instance)}"
: "${UPSTREAM_2:?set UPSTREAM_2 (host:port of the second instance)}"
: "${LB_PREFIX:?set LB_PREFIX (a writable directory)}"
LB_WORKERS=${LB_WORKERS:-auto}
if [ -z "${NGINX:-}" ]; then
    if [ -x /usr/sbin/nginx ]; then NGINX=/usr/sbin/nginx; else NGINX=$(command -v nginx || true); fi
fi
if [ -z "$NGINX" ] || [ ! -x "$NGINX" ]; then
    echo "run-lb.sh: nginx not found (Debian/Ubuntu: apt-get install nginx-light or nginx)" >&2
    exit 1
fi

# Values go into sed replacements: refuse anything but address-like characters.
for value in "$LB_LISTEN" "$UPSTREAM_1" "$UPSTREAM_2" "$LB_WORKERS"; do
    case "$value" in
        *[!A-Za-z0-9.:_\[\]-]*) echo "run-lb.sh: unexpected character in '$value'" >&2; exit 2 ;;
    esac
done
case "$LB_PREFIX" in
    /*) ;;
    *) LB_PREFIX="$(pwd)/$LB_PREFIX" ;;
esac
case "$LB_PREFIX" in
    *[!A-Za-z0-9./_-]*) echo "run-lb.sh: LB_PREFIX may only hold letters, digits, . / _ -" >&2; exit 2 ;;
esac

mkdir -p "$LB_PREFIX"
conf="$LB_PREFIX/nginx.conf"
sed -e "s|\${LB_LISTEN}|$LB_LISTEN|g" \
    -e "s|\${UPSTREAM_1}|$UPSTREAM_1|g" \
    -e "s|\${UPSTREAM_2}|$UPSTREAM_2|g" \
    -e "s|\${LB_PREFIX}|$LB_PREFIX|g" \
    -e "s|\${LB_WORKERS}|$LB_WORKERS|g" \
    "$template" > "$conf"

if [ "${1:-}" = "-t" ]; then
    exec "$NGINX" -t -q -p "$LB_PREFIX/" -e "$LB_PREFIX/error.log" -c "$conf" -g "daemon off;"
fi
exec "$NGINX" -p "$LB_PREFIX/" -e "$LB_PREFIX/error.log" -c "$conf" -g "daemon off;"

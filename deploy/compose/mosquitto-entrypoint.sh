#!/bin/sh
# Entrypoint of the compose broker. On the first start it creates the dynamic security plugin's
# file with the admin account (DYNSEC_ADMIN_PASSWORD); then it runs mosquitto with the config.
# Paths are read from the config itself, so this works with the shipped mosquitto.conf as is.
set -eu

conf="${MOSQUITTO_CONF:-/etc/mosquitto/mosquitto.conf}"
[ -r "$conf" ] || { echo "mosquitto-entrypoint: cannot read $conf" >&2; exit 1; }

# The last value of a single-valued setting in the config ("" when absent).
setting() { sed -n "s/^$1[[:space:]][[:space:]]*//p" "$conf" | tail -n 1; }

dynsec_file="$(setting plugin_opt_config_file)"
data_dir="$(setting persistence_location)"
pid_file="$(setting pid_file)"
run_as="$(setting user)"

if [ -n "$dynsec_file" ] && [ ! -f "$dynsec_file" ]; then
  if [ -z "${DYNSEC_ADMIN_PASSWORD:-}" ]; then
    echo "mosquitto-entrypoint: $dynsec_file does not exist and DYNSEC_ADMIN_PASSWORD is not set" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$dynsec_file")"
  mosquitto_ctrl dynsec init "$dynsec_file" "${DYNSEC_ADMIN_USER:-edgefleet-admin}" "$DYNSEC_ADMIN_PASSWORD" >/dev/null
  echo "mosquitto-entrypoint: created $dynsec_file with admin ${DYNSEC_ADMIN_USER:-edgefleet-admin}" >&2
fi

# Started as root, mosquitto drops to `user`; that user must own what it writes.
for dir in "$data_dir" "${dynsec_file:+$(dirname "$dynsec_file")}" "${pid_file:+$(dirname "$pid_file")}"; do
  [ -n "$dir" ] || continue
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ] && [ -n "$run_as" ]; then
    chown -R "$run_as" "$dir"
  fi
done

exec mosquitto -c "$conf"

# syntax=docker/dockerfile:1
# mosquitto 2.0 from Debian bookworm, with the dynamic security plugin and mosquitto_ctrl, so that
# the shipped deploy/mosquitto/mosquitto.conf runs unchanged: its plugin path, pid_file and
# persistence_location are Debian's. Build context: deploy/compose.
FROM debian:bookworm-slim

# The shipped config names the x86-64 plugin path; the symlink makes it valid on other
# architectures too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* \
 && so="$(dpkg -L mosquitto | grep '/mosquitto_dynamic_security\.so$')" \
 && want=/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so \
 && if [ "$so" != "$want" ]; then mkdir -p "$(dirname "$want")" && ln -s "$so" "$want"; fi

COPY --chmod=0755 mosquitto-entrypoint.sh /usr/local/bin/mosquitto-entrypoint
# Started as root: the entrypoint fixes ownership, then mosquitto drops to `user mosquitto`.
EXPOSE 1883
ENTRYPOINT ["/usr/local/bin/mosquitto-entrypoint"]

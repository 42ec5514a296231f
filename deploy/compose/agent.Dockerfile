# syntax=docker/dockerfile:1
# The edgefleet agent: edge-agent with the `agent` extra only (LiteRT, paho, psutil; no
# TensorFlow). Build context: the repository root (compose.yaml sets it).
#
# Accelerators: pass the devices and their groups, e.g.
#   docker run --device /dev/apex_0 --group-add "$(getent group apex | cut -d: -f3)" ...
#   docker run --device /dev/bus/usb --group-add "$(getent group plugdev | cut -d: -f3)" ...
# The Edge TPU delegate (libedgetpu.so.1) is not in this image: it comes from Google's Coral apt
# repository; build a derived image that installs libedgetpu1-std for Coral devices.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /src/
COPY protos /src/protos
COPY agent /src/agent
COPY coordinator /src/coordinator
# `edge-agent run` runs under python -OO (agent/cli.py: ~2 MB less resident); its bytecode is compiled
# here, since the service user cannot write it beside the sources at every start.
RUN pip install "/src[agent]" && rm -rf /src \
 && python -OO -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

RUN useradd --system --home-dir /var/lib/edgefleet-agent --shell /usr/sbin/nologin edgefleet \
 && install -d -m 0700 -o edgefleet -g edgefleet /var/lib/edgefleet-agent

# Read by `edge-agent enroll` and `edge-agent run` alike.
ENV EDGEFLEET_AGENT_STATE_DIR=/var/lib/edgefleet-agent

USER edgefleet
WORKDIR /var/lib/edgefleet-agent
# SIGTERM (docker stop) makes the agent publish a retained `stopped` before it exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["edge-agent"]
CMD ["run"]

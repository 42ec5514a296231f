# syntax=docker/dockerfile:1
# The edgefleet coordinator: edge-coordinator and edgectl with the `coordinator` extra
# (TensorFlow, the optimizer, the PostgreSQL driver). Build context: the repository root
# (compose.yaml sets it); coordinator.Dockerfile.dockerignore keeps the context small.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /src/
COPY protos /src/protos
COPY agent /src/agent
COPY coordinator /src/coordinator
RUN pip install "/src[coordinator]" && rm -rf /src

# An unprivileged user whose home is the data directory: Keras and matplotlib write caches under
# $HOME. The directory exists in the image so that a new named volume inherits its owner.
RUN useradd --system --home-dir /var/lib/edgefleet-coordinator --shell /usr/sbin/nologin edgefleet-coordinator \
 && install -d -m 0700 -o edgefleet-coordinator -g edgefleet-coordinator /var/lib/edgefleet-coordinator \
 && install -d -m 0755 /etc/edgefleet \
 && printf 'coordinator = "127.0.0.1:7400"\ntoken_file = "/var/lib/edgefleet-coordinator/admin.token"\n' > /etc/edgefleet/edgectl.toml

# `docker compose exec coordinator edgectl ...` finds the coordinator and its admin token here.
ENV EDGEFLEET_CONFIG=/etc/edgefleet/edgectl.toml

USER edgefleet-coordinator
WORKDIR /var/lib/edgefleet-coordinator
EXPOSE 7400 7401
ENTRYPOINT ["edge-coordinator"]
CMD ["run", "--config", "/etc/edgefleet/coordinator.toml"]

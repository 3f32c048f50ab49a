# syntax=docker/dockerfile:1
# gprxy serve as a container (README "Running on Kubernetes"). Not built here (no docker on the build
# machine): the install step is the one test/package/pack.test.ts runs (npm pack, then an install of the
# tarball without dev and optional dependencies), so what this image holds is what that test checks.
#
#   docker build -t gprxy:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v $PWD/gprxy.yaml:/etc/gprxy/gprxy.yaml:ro -p 6432:6432 gprxy:0.1.0
ARG NODE_VERSION=20

# Build: dev dependencies compile TypeScript and write the oclif manifest; npm pack makes the tarball users get.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: the demo's embedded PostgreSQL need not be unpacked to compile.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig*.json ./
COPY bin ./bin
COPY src ./src
COPY examples ./examples
COPY validator ./validator
RUN npm run build && npm pack --ignore-scripts --silent --pack-destination /tmp && mv /tmp/gprxy-*.tgz /tmp/gprxy.tgz

# Runtime: the packed package with production dependencies only; no npm cache, no build tools, no root.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    OCLIF_DISABLE_ENGINE_WARNING=1 \
    HOME=/tmp
COPY --from=build /tmp/gprxy.tgz /tmp/gprxy.tgz
RUN npm install --global --omit=dev --omit=optional --no-audit --no-fund --loglevel=error /tmp/gprxy.tgz \
 && rm -rf /tmp/gprxy.tgz /root/.npm /tmp/* \
 && mkdir -p /etc/gprxy
# A fixed numeric non-root user (Kubernetes' runAsNonRoot checks the number); nothing is written outside
# /tmp (HOME) and whatever the config names (jwks.cache_dir: mount a volume there), so the root filesystem
# may be read-only.
USER 10001:10001
WORKDIR /tmp
# 6432: PostgreSQL clients; 9187: /metrics, /healthz, /readyz (metrics.listen in the config).
EXPOSE 6432 9187
STOPSIGNAL SIGTERM
ENTRYPOINT ["gprxy"]
CMD ["serve", "--config", "/etc/gprxy/gprxy.yaml"]

# syntax=docker/dockerfile:1
# One image with planner, worker and qfetch. Build:
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t ghcr.io/qfetch/qfetch:0.1.0 .
# deploy/validate checks that this file parses and that what it copies and
# builds exists in the repo.

# The Go the repo is tested with (go.mod asks for 1.26; CI runs 1.26.8).
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Dependencies first: this layer stays cached while only code changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
ARG REVISION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X github.com/qfetch/qfetch/internal/app.Version=${VERSION} -X github.com/qfetch/qfetch/internal/app.Revision=${REVISION}" \
      -o /out/ ./cmd/planner ./cmd/worker ./cmd/qfetch

# Static binaries: no libc, no shell. nonroot is uid 65532, as the pods' securityContext says.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/planner /out/worker /out/qfetch /usr/local/bin/
USER 65532:65532
# The pods name their binary; plain `docker run` gets the tool's help.
ENTRYPOINT ["/usr/local/bin/qfetch"]

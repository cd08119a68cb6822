# syntax=docker/dockerfile:1
#
# One Dockerfile builds every billfn image. FUNCTION names the program:
# functions/<FUNCTION> by default, cmd/<FUNCTION> with DIR=cmd (the
# kafka-trigger and migrate images). faas-cli passes FUNCTION from the
# build_args of stack.yml.
#
#   docker build --build-arg FUNCTION=process-transaction -t billfn-process-transaction .
#   docker build --build-arg DIR=cmd --build-arg FUNCTION=kafka-trigger -t billfn-kafka-trigger .
#
# Like OpenFaaS's golang-middleware template the build stage can run the
# program's tests first (TEST_ENABLED=true). They need PostgreSQL and Redis,
# so give the build the host's network and services:
#
#   docker build --network host --build-arg TEST_ENABLED=true --build-arg FUNCTION=process-transaction .
#
# The final image is distroless static, non-root, with one static binary; a
# function speaks the watchdog contract itself (shared/server), so there is
# no fwatchdog process.

ARG GO_VERSION=1.26

FROM --platform=${BUILDPLATFORM:-linux/amd64} golang:${GO_VERSION}-alpine AS build
ARG TARGETOS
ARG TARGETARCH
ARG FUNCTION
ARG DIR=functions
ARG TEST_ENABLED=false
ARG GOPROXY=
ARG GOFLAGS=
ENV CGO_ENABLED=0

WORKDIR /src
RUN test -n "${FUNCTION}" || { echo "build with --build-arg FUNCTION=<name>" >&2; exit 1; }
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN test -f "./${DIR}/${FUNCTION}/main.go" || { echo "no ./${DIR}/${FUNCTION}/main.go" >&2; exit 1; }
RUN test -z "$(gofmt -l ./shared ./cmd ./functions ./migrations)" || { echo "Run gofmt -s -w on your Go code" >&2; exit 1; }
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "${TEST_ENABLED}" = "true" ]; then go vet "./${DIR}/${FUNCTION}/..." && go test -count=1 "./${DIR}/${FUNCTION}/..."; fi
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags="-s -w" -o /out/app "./${DIR}/${FUNCTION}"

FROM --platform=${TARGETPLATFORM:-linux/amd64} gcr.io/distroless/static-debian12:nonroot AS ship
ARG FUNCTION
LABEL org.opencontainers.image.title="billfn ${FUNCTION}" \
      org.opencontainers.image.source="https://github.com/billfn/billfn"
COPY --from=build /out/app /usr/local/bin/app
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/app"]

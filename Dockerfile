# syntax=docker/dockerfile:1
# previewd's container image: a static binary on distroless, running as
# non-root, with the generic preview chart at /charts/preview-app (the chart
# of every repository whose config names `chart: /charts/preview-app`).
#
#   docker build -t ghcr.io/previewd/previewd:$(git describe --tags --always) \
#     --build-arg VERSION=$(git describe --tags --always --dirty) .
#
# Not exercised by the test suite (no container engine on the development
# machines); docs/operations.md says how to build and check it.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Module downloads first: this layer is reused while go.mod/go.sum are unchanged.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/previewd/previewd/internal/version.Version=${VERSION}" \
      -o /out/previewd ./cmd/previewd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/previewd /usr/local/bin/previewd
COPY charts/preview-app /charts/preview-app
# 65532 is distroless' "nonroot"; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/previewd"]
CMD ["run", "--config", "/etc/previewd/config/previewd.yaml"]

# doorman control plane: a static binary on a distroless base, non-root.
# Build from the repository root:
#   docker build -f deploy/docker/controlplane.Dockerfile -t doorman.local/controlplane:e2e .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# -buildvcs=true: the version --version and doorman_build_info report is
# the commit of the .git copied in (see internal/version).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=true -ldflags="-s -w" -o /out/controlplane ./controlplane

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/controlplane /controlplane
USER 65532:65532
ENTRYPOINT ["/controlplane"]

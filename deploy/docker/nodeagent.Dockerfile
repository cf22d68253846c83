# doorman node agent: a static binary on a distroless base. It talks to the
# kernel over netlink only (no nft or iptables binaries needed); it runs as
# root with NET_ADMIN (see deploy/base/nodeagent.yaml).
# Build from the repository root:
#   docker build -f deploy/docker/nodeagent.Dockerfile -t doorman.local/nodeagent:e2e .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# -buildvcs=true: the version --version and doorman_build_info report is
# the commit of the .git copied in (see internal/version).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=true -ldflags="-s -w" -o /out/nodeagent ./nodeagent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/nodeagent /nodeagent
ENTRYPOINT ["/nodeagent"]

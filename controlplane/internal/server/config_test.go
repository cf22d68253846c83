package server

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/internal/config"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func inspectClient(t *testing.T, opts ...Option) doormanv1.InspectServiceClient {
	t.Helper()
	h := hub.New(hub.Config{VersionSeed: 1})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(Codec())
	Register(gs, h, nil, opts...)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(h.Close)
	t.Cleanup(gs.Stop)
	return doormanv1.NewInspectServiceClient(dialBufconn(t, lis))
}

func TestGetConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controlplane.yaml")
	text := "apiVersion: config.doorman.io/v1alpha1\nkind: ControlPlaneConfiguration\nmaxConnections: 7\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	fs.Int("max-connections", 1, "")
	fs.String("listen", ":9400", "")
	file := config.Register(fs, config.ControlPlaneKind)
	if err := fs.Parse([]string{"--config=" + path, "--listen=:1"}); err != nil {
		t.Fatal(err)
	}
	effective, err := file.Load()
	if err != nil {
		t.Fatal(err)
	}

	got, err := inspectClient(t, WithConfiguration(effective)).GetConfig(context.Background(), &doormanv1.GetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &doormanv1.GetConfigResponse{
		ApiVersion: "config.doorman.io/v1alpha1", Kind: "ControlPlaneConfiguration", Path: path,
		Yaml:   "apiVersion: config.doorman.io/v1alpha1\nkind: ControlPlaneConfiguration\nlisten: :1\nmaxConnections: 7\n",
		Fields: map[string]string{"listen": ":1", "maxConnections": "7"},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetConfig (-want +got):\n%s", diff)
	}
}

func TestGetConfigUnrecorded(t *testing.T) {
	_, err := inspectClient(t).GetConfig(context.Background(), &doormanv1.GetConfigRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetConfig without a configuration: %v, want Unavailable", err)
	}
}

package inspect

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/config"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestGetConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodeagent.yaml")
	text := "apiVersion: config.doorman.io/v1alpha1\nkind: NodeAgentConfiguration\nconntrackMin: 5\nnetns: /run/netns/n1\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("nodeagent", flag.ContinueOnError)
	fs.Int("conntrack-min", 131072, "")
	fs.String("netns", "", "")
	fs.Bool("cleanup", false, "")
	file := config.Register(fs, config.NodeAgentKind, "cleanup")
	if err := fs.Parse([]string{"--config=" + path, "--netns=/run/netns/n2"}); err != nil {
		t.Fatal(err)
	}
	effective, err := file.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := New(&source{state: &doormanv1.GetStateResponse{}}, &kernel{resp: &doormanv1.GetKernelResponse{}})
	client := doormanv1.NewAgentInspectServiceClient(serve(t, s))
	ctx := context.Background()
	if _, err := client.GetConfig(ctx, &doormanv1.AgentInspectServiceGetConfigRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("GetConfig before SetConfig: %v, want Unavailable", err)
	}

	s.SetConfig(effective)
	got, err := client.GetConfig(ctx, &doormanv1.AgentInspectServiceGetConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &doormanv1.AgentInspectServiceGetConfigResponse{
		ApiVersion: "config.doorman.io/v1alpha1", Kind: "NodeAgentConfiguration", Path: path,
		Yaml:   "apiVersion: config.doorman.io/v1alpha1\nkind: NodeAgentConfiguration\nconntrackMin: 5\nnetns: /run/netns/n2\n",
		Fields: map[string]string{"conntrackMin": "5", "netns": "/run/netns/n2"},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetConfig (-want +got):\n%s", diff)
	}
}

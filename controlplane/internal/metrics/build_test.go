package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/doorman-proxy/doorman/internal/version"
)

func TestBuildInfo(t *testing.T) {
	m, err := New(&fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	info := version.Get()
	want := fmt.Sprintf(`doorman_build_info{binary="controlplane",goversion=%q,revision=%q,version=%q} 1`, info.GoVersion, info.ShortRevision(), info.Version)
	if got := scrape(t, m); !strings.Contains(got, want+"\n") {
		t.Errorf("/metrics lacks %s:\n%s", want, got)
	}
}

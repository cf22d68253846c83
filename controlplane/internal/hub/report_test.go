package hub

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/internal/testlog"
)

type fakeEvents struct{ posted []string }

func (f *fakeEvents) AddressConflict(svc *corev1.Service, c model.Conflict) {
	f.posted = append(f.posted, "AddressConflict "+svc.Namespace+"/"+svc.Name+" "+string(svc.UID)+": "+c.String())
}

func (f *fakeEvents) InvalidService(svc *corev1.Service, err error) {
	f.posted = append(f.posted, "InvalidService "+svc.Namespace+"/"+svc.Name+" "+string(svc.UID)+": "+err.Error())
}

func external(ns, name string, age time.Duration, clusterIP string, ips ...string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(age))},
		Spec: corev1.ServiceSpec{
			ClusterIPs:  []string{clusterIP},
			Ports:       []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			ExternalIPs: ips,
		},
	}
}

// TestConflictReported: the Service that loses an address gets one
// Warning Event and one log line naming both Services, however often the
// informers resync either; Inspect and the gauge see the conflict until
// the owner lets the address go. A refused Service gets one Event per
// reason, and its log line at every change as before.
func TestConflictReported(t *testing.T) {
	var logs testlog.Buffer
	ev := &fakeEvents{}
	h := New(Config{VersionSeed: 1, Events: ev, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})
	owner := external("zzz", "old", 0, "10.96.0.1", "192.0.2.1")
	loser := external("aaa", "new", time.Hour, "10.96.0.2", "192.0.2.1")
	for range 3 {
		h.SetService(owner)
		h.SetService(loser)
	}
	want := []string{"AddressConflict aaa/new uid-new: externalIP 192.0.2.1:80/tcp is the externalIP of zzz/old"}
	if diff := cmp.Diff(want, ev.posted); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	if n := strings.Count(logs.String(), "service address conflict"); n != 1 {
		t.Errorf("%d conflict log lines, want 1:\n%s", n, logs.String())
	}
	for _, s := range []string{"service=aaa/new", "owner=zzz/old", "address=192.0.2.1:80/tcp"} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logs.String())
		}
	}
	if got := h.ServiceConflicts("aaa", "new"); len(got) != 1 || got[0].Owner != "zzz/old" {
		t.Errorf("ServiceConflicts = %v, want one owned by zzz/old", got)
	}
	if n := h.AddressConflicts(); n != 1 {
		t.Errorf("AddressConflicts = %d, want 1", n)
	}

	h.DeleteService("zzz", "old")
	if got := h.ServiceConflicts("aaa", "new"); got != nil {
		t.Errorf("ServiceConflicts after the owner left = %v", got)
	}
	if n := h.AddressConflicts(); n != 0 {
		t.Errorf("AddressConflicts after the owner left = %d", n)
	}

	ev.posted = nil
	bad := external("aaa", "bad", 0, "10.96.0.3", "not-an-ip")
	for range 2 {
		h.SetService(bad)
	}
	want = []string{`InvalidService aaa/bad uid-bad: service aaa/bad: externalIPs: invalid IP address "not-an-ip"`}
	if diff := cmp.Diff(want, ev.posted); diff != "" {
		t.Errorf("Events (-want +got):\n%s", diff)
	}
	if n := strings.Count(logs.String(), "skipping invalid objects"); n != 2 {
		t.Errorf("%d invalid-object log lines, want one per change (2)", n)
	}
}

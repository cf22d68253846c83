package events

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
)

// Reasons of the Events posted.
const (
	ReasonAddressConflict = "AddressConflict"
	ReasonInvalidService  = "InvalidService"
)

// Component is the Events' source component.
const Component = "doorman-controlplane"

// Defaults of Config's per-Service budget: what client-go's correlator
// allows by default (25 at once, then one per 5 minutes).
const (
	DefaultPerServiceBurst         = 25
	DefaultPerServiceQPS   float32 = 1. / 300.
)

// Config configures a Recorder.
type Config struct {
	// Client writes the Events. Give it a client of its own: its QPS and
	// Burst are the rate limit of all Events together, and they then never
	// hold back the informers' requests.
	Client kubernetes.Interface
	// Host names this replica (its Pod's name) in the Events' source: with
	// several replicas, each posts its own Event for a conflict, and Host
	// tells them apart.
	Host string
	// PerServiceBurst and PerServiceQPS bound the Events of one Service
	// (zero: the defaults).
	PerServiceBurst int
	PerServiceQPS   float32
}

// Recorder posts the Events; it implements hub.Events.
type Recorder struct {
	rec record.EventRecorder
}

// Start starts sending Events until ctx is done.
func Start(ctx context.Context, cfg Config) *Recorder {
	opts := record.CorrelatorOptions{BurstSize: cfg.PerServiceBurst, QPS: cfg.PerServiceQPS}
	if opts.BurstSize <= 0 {
		opts.BurstSize = DefaultPerServiceBurst
	}
	if opts.QPS <= 0 {
		opts.QPS = DefaultPerServiceQPS
	}
	b := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(opts))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Client.CoreV1().Events("")})
	return &Recorder{rec: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Component, Host: cfg.Host})}
}

// AddressConflict posts that svc is sent without an address another
// Service owns.
func (r *Recorder) AddressConflict(svc *corev1.Service, c model.Conflict) {
	r.rec.Event(svc, corev1.EventTypeWarning, ReasonAddressConflict, ConflictMessage(c))
}

// InvalidService posts that svc is refused as a whole, and why.
func (r *Recorder) InvalidService(svc *corev1.Service, err error) {
	r.rec.Event(svc, corev1.EventTypeWarning, ReasonInvalidService, "not programmed on any node: "+err.Error())
}

// ConflictMessage is an AddressConflict Event's message: the address,
// protocol and port left out, the Service that owns it and the rule that
// decided.
func ConflictMessage(c model.Conflict) string {
	rule := "the older Service (by creationTimestamp, then UID) keeps a contested address"
	if c.OwnerClaim == model.ClaimClusterIP && c.Claim != model.ClaimClusterIP {
		rule = "an externalIP or LoadBalancer IP never displaces a ClusterIP"
	}
	return fmt.Sprintf("%s %s is not programmed on any node: Service %s owns it as its %s (%s)",
		c.Claim, c.Frontend, c.Owner, c.OwnerClaim, rule)
}

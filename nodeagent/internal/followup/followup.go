package followup

import (
	"errors"
	"maps"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Cleaner deletes stale conntrack entries (*conntrack.Cleaner).
type Cleaner interface {
	Clean(changes []dataplane.Change) error
}

// Health serves the health check node ports of the entries it is given
// (*healthcheck.Servers): every entry of the view with a health check node
// port, and no other.
type Health interface {
	Update(entries map[string]*doormanv1.Entry) error
}

// Observer counts failures (metrics); may be nil.
type Observer interface {
	ConntrackCleanFailed()
	HealthCheckFailed()
}

// Config configures a Kernel. Cleaner and Health may be nil.
type Config struct {
	Cleaner  Cleaner
	Health   Health
	Observer Observer
	Logger   hclog.Logger
}

// Kernel is an agent.Kernel that runs the follow-ups of each commit.
type Kernel struct {
	inner agent.Kernel
	cfg   Config
	log   hclog.Logger

	mu     sync.Mutex
	synced bool
	view   map[string]*doormanv1.Entry // as last committed
	health map[string]*doormanv1.Entry // the entries of view with a health check node port
}

var _ agent.Kernel = (*Kernel)(nil)

// Wrap returns inner with the follow-ups of cfg.
func Wrap(inner agent.Kernel, cfg Config) *Kernel {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Kernel{inner: inner, cfg: cfg, log: log, view: map[string]*doormanv1.Entry{}, health: map[string]*doormanv1.Entry{}}
}

// Sync programs the view; once committed (also when some entries were
// left out), it cleans what changed since the last commit and updates the
// health checks.
func (k *Kernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	stats, err := k.inner.Sync(view)
	var partial *dataplane.InvalidEntriesError
	if err != nil && !errors.As(err, &partial) {
		return stats, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var changes []dataplane.Change
	if k.synced {
		changes = Changes(k.view, view)
	}
	k.synced = true
	k.view = maps.Clone(view)
	clear(k.health)
	for key, e := range view {
		if hasHealthCheck(e) {
			k.health[key] = e
		}
	}
	k.clean(changes)
	k.updateHealth()
	return stats, err
}

// Apply moves the kernel by the changes; once committed, it cleans what
// they made stale and, when one of them has a health check node port,
// updates the health checks.
func (k *Kernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	stats, err := k.inner.Apply(changes)
	if err != nil {
		return stats, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	health := false
	for _, c := range changes {
		if c.New == nil {
			delete(k.view, c.Key)
		} else {
			k.view[c.Key] = c.New
		}
		if hasHealthCheck(c.Old) || hasHealthCheck(c.New) {
			health = true
			if hasHealthCheck(c.New) {
				k.health[c.Key] = c.New
			} else {
				delete(k.health, c.Key)
			}
		}
	}
	k.clean(changes)
	if health {
		k.updateHealth()
	}
	return stats, nil
}

// RetireUnused deletes unused chains: no entry changes, nothing to follow
// up.
func (k *Kernel) RetireUnused() (int, error) { return k.inner.RetireUnused() }

// Unchanged passes the question on (see agent.Unchanging).
func (k *Kernel) Unchanged() bool { return agent.Unchanged(k.inner) }

func (k *Kernel) clean(changes []dataplane.Change) {
	if k.cfg.Cleaner == nil || len(changes) == 0 {
		return
	}
	if err := k.cfg.Cleaner.Clean(changes); err != nil {
		k.log.Warn("conntrack clean-up failed", "changes", len(changes), "error", err)
		if k.cfg.Observer != nil {
			k.cfg.Observer.ConntrackCleanFailed()
		}
	}
}

func (k *Kernel) updateHealth() {
	if k.cfg.Health == nil {
		return
	}
	if err := k.cfg.Health.Update(k.health); err != nil {
		k.log.Warn("health check servers not all serving", "error", err)
		if k.cfg.Observer != nil {
			k.cfg.Observer.HealthCheckFailed()
		}
	}
}

func hasHealthCheck(e *doormanv1.Entry) bool {
	return e.GetServicePort().GetHealthCheckNodePort() != 0
}

// Changes returns what moves old to new, one Change per key that differs,
// ordered by key.
func Changes(old, new map[string]*doormanv1.Entry) []dataplane.Change {
	var out []dataplane.Change
	for key, o := range old {
		n, ok := new[key]
		switch {
		case !ok:
			out = append(out, dataplane.Change{Key: key, Old: o})
		case !same(o, n):
			out = append(out, dataplane.Change{Key: key, Old: o, New: n})
		}
	}
	for key, n := range new {
		if _, ok := old[key]; !ok {
			out = append(out, dataplane.Change{Key: key, New: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// same reports whether two entries of one key hold the same value: the
// same message, the same non-zero digest, or equal values.
func same(a, b *doormanv1.Entry) bool {
	if a == b {
		return true
	}
	if a.GetDigest() != 0 && b.GetDigest() != 0 {
		return a.GetDigest() == b.GetDigest()
	}
	return proto.Equal(a.GetServicePort(), b.GetServicePort()) && proto.Equal(a.GetNode(), b.GetNode())
}

package agent

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Freshness is what the agent holds of the control planes' freshness
// markers (SyncResponse.freshness): per watched resource, the highest
// resourceVersion (etcd revision) of a change among the updates it
// applied. An update from a control plane that has seen less on any
// resource misses a change the node holds (its watch fell behind): it
// would take the node back to older endpoints, and is refused.
type Freshness map[string]uint64

// String is the marker as "resource=rv" pairs, ordered by resource.
func (f Freshness) String() string {
	parts := make([]string, 0, len(f))
	for _, r := range slices.Sorted(maps.Keys(f)) {
		parts = append(parts, r+"="+strconv.FormatUint(f[r], 10))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Marker is an update's freshness marker.
type Marker map[string]*doormanv1.ResourceVersions

// String is the marker as "resource=seen/changed" pairs, ordered by
// resource.
func (m Marker) String() string {
	parts := make([]string, 0, len(m))
	for _, r := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d/%d", r, m[r].GetSeen(), m[r].GetChanged()))
	}
	return "{" + strings.Join(parts, " ") + "(seen/changed)}"
}

// Carry is the marker of a stream after an update carrying got: held (the
// stream's marker so far), with got's resources replaced. From stream
// protocol 3 on, a control plane sends in each update only the resources
// whose versions moved since the previous update on the stream; the
// others are as that update left them. A full marker from an older
// control plane replaces every resource it names.
func Carry(held, got Marker) Marker {
	out := make(Marker, max(len(held), len(got)))
	maps.Copy(out, held)
	maps.Copy(out, got)
	return out
}

// Lag is one resource on which an update is behind what the node holds:
// its control plane has seen less than the latest change applied.
type Lag struct {
	Resource string
	Held     uint64 // the latest change the node applied
	Seen     uint64 // what the update's control plane has seen
}

// Behind lists, ordered by resource, the resources on which got has seen
// less than the change held. A resource missing from either is not
// compared.
func Behind(held Freshness, got Marker) []Lag {
	var out []Lag
	for _, r := range slices.Sorted(maps.Keys(held)) {
		if g, ok := got[r]; ok && g.GetSeen() < held[r] {
			out = append(out, Lag{Resource: r, Held: held[r], Seen: g.GetSeen()})
		}
	}
	return out
}

// Advance is what the node holds after applying an update carrying got:
// per resource the later change of the two. With behind (an update
// accepted although behind, see Agent.HandleBehind) got's changes replace
// the ones held, so that a cluster whose data went back (etcd restored
// from a backup) is followed from then on.
func Advance(held Freshness, got Marker, behind bool) Freshness {
	out := maps.Clone(held)
	if out == nil {
		out = Freshness{}
	}
	for r, g := range got {
		if behind {
			out[r] = g.GetChanged()
		} else {
			out[r] = max(out[r], g.GetChanged())
		}
	}
	return out
}

// BehindError is why an update behind what the node holds was refused.
type BehindError struct {
	Version uint64
	Held    Freshness
	Got     Marker
	Lags    []Lag
}

func (e *BehindError) Error() string {
	lags := make([]string, len(e.Lags))
	for i, l := range e.Lags {
		lags[i] = fmt.Sprintf("%s seen %d < changed %d", l.Resource, l.Seen, l.Held)
	}
	return fmt.Sprintf("update %d is behind what this node applied (%s): control plane at %s, node at %s",
		e.Version, strings.Join(lags, ", "), e.Got, e.Held)
}

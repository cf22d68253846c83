package version

import "fmt"

// Protocol is the version of the stream between agent and control plane
// (AgentService.Sync) this build speaks.
//
// The stream evolves by adding fields: a peer skips the fields it does not
// know, and a field's absence keeps the meaning things had before it
// existed (an update without freshness markers is not checked for them).
// Such changes keep Protocol. It is raised only by a change an older peer
// would misread: a field whose absence means something new, a new meaning
// for an old field, a field the other side stops sending.
//
// The skew rule: a control plane serves the agents whose protocol lies in
// its Served range, [OldestAgentProtocol, Protocol]; it refuses any other
// in the handshake. A release that raises Protocol keeps
// OldestAgentProtocol, so that its control plane, upgraded first, still
// serves the agents of the release before; OldestAgentProtocol follows at
// the earliest one minor release later. An agent newer than its control
// plane is refused once its protocol is newer: control planes are upgraded
// first.
//
// Protocol 2: the agent assembles the ports a control plane sends by node
// (doormanv1.AssembleServicePort); a protocol-1 agent would program such a
// port without endpoints.
//
// Protocol 3: an update's freshness marker carries only the resources
// whose versions moved since the previous update on the same stream (the
// first carries all), and the agent keeps the stream's marker; a
// protocol-2 agent would compare the others against nothing. The ports
// sent by node carry no trigger time in their entries: the update does
// (SyncResponse.trigger_time_unix_nano).
const Protocol uint32 = 3

// OldestAgentProtocol is the oldest agent protocol a control plane of this
// build serves.
const OldestAgentProtocol uint32 = 1

// Range is the agent protocols a control plane serves, both ends included.
type Range struct{ Oldest, Newest uint32 }

// Served is the range of this build.
var Served = Range{Oldest: OldestAgentProtocol, Newest: Protocol}

// MovedFreshnessProtocol is the oldest agent protocol that keeps its
// stream's freshness marker, so is sent only what moved.
const MovedFreshnessProtocol uint32 = 3

// ByNodeProtocol is the oldest agent protocol that assembles ports sent
// by node. A control plane that sends them serves ByNodeServed.
const ByNodeProtocol uint32 = 2

// ByNodeServed is the range a control plane that sends ports by node
// serves: agents of older protocols would program those ports without
// endpoints, so they are refused.
var ByNodeServed = Range{Oldest: ByNodeProtocol, Newest: Protocol}

// AgentProtocol is the protocol of an agent whose Hello says p. An agent
// built before Hello carried it says nothing (0); it speaks protocol 1.
func AgentProtocol(p uint32) uint32 {
	if p == 0 {
		return 1
	}
	return p
}

// SkewError is a Hello from an agent whose protocol the control plane does
// not serve.
type SkewError struct {
	Node string
	// AgentProtocol is as AgentProtocol reads it; AgentVersion is what the
	// agent said ("" from an agent too old to say).
	AgentProtocol uint32
	AgentVersion  string
	Served        Range
	// ControlPlaneVersion is the refusing control plane's build.
	ControlPlaneVersion string
}

func (e *SkewError) Error() string {
	agentVersion := e.AgentVersion
	if agentVersion == "" {
		agentVersion = "a build from before agents said their version"
	}
	agent := fmt.Sprintf("the agent on node %s (%s) speaks stream protocol %d", e.Node, agentVersion, e.AgentProtocol)
	cp := fmt.Sprintf("this control plane (%s) serves agent protocols %d to %d", e.ControlPlaneVersion, e.Served.Oldest, e.Served.Newest)
	if e.AgentProtocol > e.Served.Newest {
		return agent + ", newer than " + cp + ": upgrade the control plane first (or roll the agent back)"
	}
	return agent + ", older than " + cp + ": upgrade the agent (or roll the control plane back)"
}

// Check returns a *SkewError unless r serves an agent whose Hello says
// protocol and agentVersion.
func (r Range) Check(node string, protocol uint32, agentVersion string) error {
	p := AgentProtocol(protocol)
	if p >= r.Oldest && p <= r.Newest {
		return nil
	}
	return &SkewError{Node: node, AgentProtocol: p, AgentVersion: agentVersion, Served: r, ControlPlaneVersion: Get().String()}
}

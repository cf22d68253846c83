package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/e2e/promtext"
)

// Fault injection for the failure-mode tests (e2e/faults): signals to the
// node agents, restarts of the API server and the control plane, a second
// control-plane replica, node reboots, and reads of doorman's table that
// do not go through the agent.

// AgentMetricsPort is where the node agent serves /metrics (its default,
// inside the node's namespace).
const AgentMetricsPort = 10249

// ControlPlaneReplicaPort is the gateway port a second control-plane
// replica is relayed on (StartControlPlaneReplica).
const ControlPlaneReplicaPort = ControlPlanePort + 2

// DoormanTable is the table the node agent owns.
const (
	DoormanTableFamily = nftables.TableFamilyINet
	DoormanTableName   = "doorman"
)

func (c *Cluster) agent(node string) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.agents[node]
	if p == nil {
		return nil, fmt.Errorf("no agent running on %s", node)
	}
	return p, nil
}

// SignalAgent sends sig to the node agent of a node (SIGSTOP and SIGCONT
// freeze and thaw it).
func (c *Cluster) SignalAgent(node string, sig syscall.Signal) error {
	p, err := c.agent(node)
	if err != nil {
		return err
	}
	if p.exited() {
		return fmt.Errorf("agent on %s exited: %w", node, p.err)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %v to agent on %s: %w", sig, node, err)
	}
	return nil
}

// KillAgent kills the node agent of a node with SIGKILL and waits for it to
// be gone; its kernel state and cache stay.
func (c *Cluster) KillAgent(node string) error {
	p, err := c.agent(node)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.agents, node)
	c.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("agent on %s still running 10s after SIGKILL", node)
	}
}

// AgentRunning reports whether the node's agent process is alive, and its
// exit error when not.
func (c *Cluster) AgentRunning(node string) (bool, error) {
	p, err := c.agent(node)
	if err != nil {
		return false, err
	}
	if p.exited() {
		return false, p.err
	}
	return true, nil
}

// AgentLog is the node agent's log file (appended to across restarts).
func (c *Cluster) AgentLog(node string) string {
	return filepath.Join(c.logDir, "nodeagent-"+node+".log")
}

// ControlPlaneLog is the log file of the control plane (replica 1; the
// second replica logs to controlplane-2.log).
func (c *Cluster) ControlPlaneLog() string { return filepath.Join(c.logDir, "controlplane.log") }

// LogMark is a position in a log file; Since returns what was written
// after it.
type LogMark struct {
	path string
	off  int64
}

// MarkLog marks the current end of the log file at path (its start when
// there is none yet).
func MarkLog(path string) LogMark {
	st, err := os.Stat(path)
	if err != nil {
		return LogMark{path: path}
	}
	return LogMark{path: path, off: st.Size()}
}

// Path is the marked file.
func (m LogMark) Path() string { return m.path }

// Since is what the file got after the mark ("" when it cannot be read).
func (m LogMark) Since() string {
	f, err := os.Open(m.path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(m.off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// WaitAgentHealthy polls the node agent's /healthz every 5 ms until it
// answers 200 and returns how long that took.
func (c *Cluster) WaitAgentHealthy(ctx context.Context, node string) (time.Duration, error) {
	n, ok := c.node(node)
	if !ok {
		return 0, fmt.Errorf("no node %q", node)
	}
	start := time.Now()
	hc := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DialContext: dialerIn(n.NetNS), DisableKeepAlives: true},
	}
	url := "http://" + hostPort("127.0.0.1", AgentHealthPort) + "/healthz"
	err := pollOK(ctx, hc, url, 5*time.Millisecond, "agent on "+node+" not healthy", func() error {
		if p, err := c.agent(node); err == nil && p.exited() {
			return fmt.Errorf("agent on %s exited (%w); log %s:\n%s", node, p.err, p.logPath, p.tail(2000))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// AgentMetrics scrapes the node agent's /metrics and returns each
// counter and gauge by name, summed over its labels.
func (c *Cluster) AgentMetrics(ctx context.Context, node string) (map[string]float64, error) {
	var out map[string]float64
	err := c.agentMetrics(ctx, node, func(r io.Reader) (err error) {
		out, err = promtext.Sums(r)
		return err
	})
	return out, err
}

// AgentHistogramsBy scrapes the node agent's /metrics and returns the
// histogram name's series added up by the value of label.
func (c *Cluster) AgentHistogramsBy(ctx context.Context, node, name, label string) (map[string]promtext.Histogram, error) {
	var out map[string]promtext.Histogram
	err := c.agentMetrics(ctx, node, func(r io.Reader) (err error) {
		out, err = promtext.HistogramsBy(r, name, label)
		return err
	})
	return out, err
}

// agentMetrics hands what the node agent's /metrics serves to read.
func (c *Cluster) agentMetrics(ctx context.Context, node string, read func(io.Reader) error) error {
	n, ok := c.node(node)
	if !ok {
		return fmt.Errorf("no node %q", node)
	}
	hc := (&netnsHTTP{ns: n.NetNS}).client()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort("127.0.0.1", AgentMetricsPort)+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("metrics of %s: %w", node, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("metrics of %s: %s", node, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("metrics of %s: %w", node, err)
	}
	return nil
}

// findProc returns the running process started under name.
func (c *Cluster) findProc(name string) (int, *proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].name == name {
			return i, c.procs[i]
		}
	}
	return -1, nil
}

// stopProc stops a process of the cluster (SIGTERM, SIGKILL after grace);
// restartProc starts it again with the same command line.
func (c *Cluster) stopProc(name string, grace time.Duration) error {
	_, p := c.findProc(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	p.stop(grace)
	return nil
}

func (c *Cluster) restartProc(name string) (*proc, error) {
	i, old := c.findProc(name)
	if old == nil {
		return nil, fmt.Errorf("no process %s", name)
	}
	if !old.exited() {
		return nil, fmt.Errorf("%s is still running", name)
	}
	p, err := startProc(c.logDir, name, "", old.cmd.Args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs[i] = p
	c.mu.Unlock()
	return p, nil
}

// StopAPIServer stops kube-apiserver (SIGTERM); etcd keeps its data.
func (c *Cluster) StopAPIServer() error { return c.stopProc("kube-apiserver", 20*time.Second) }

// StartAPIServer starts kube-apiserver again on the same port and waits
// until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	p, err := c.restartProc("kube-apiserver")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return c.waitAPIServer(wctx, p)
}

// StopControlPlane stops doorman's control plane (replica 1); agents keep
// their kernel state and retry.
func (c *Cluster) StopControlPlane() error { return c.stopProc("controlplane", 10*time.Second) }

// StartControlPlane starts doorman's control plane (replica 1) again on the
// same ports and waits until it is ready.
func (c *Cluster) StartControlPlane(ctx context.Context) error {
	p, err := c.restartProc("controlplane")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitHTTP(wctx, p, "http://"+hostPort("127.0.0.1", c.cpHTTP)+"/readyz", nil)
}

// ControlPlaneRunning reports whether replica 1 of the control plane is
// alive.
func (c *Cluster) ControlPlaneRunning() bool {
	_, p := c.findProc("controlplane")
	return p != nil && !p.exited()
}

// ControlPlanePID is the pid of the cluster's own control plane, 0 when
// it is not running.
func (c *Cluster) ControlPlanePID() int {
	_, p := c.findProc("controlplane")
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Replica is a second control-plane replica, relayed on
// GatewayIP:ControlPlaneReplicaPort.
type Replica struct {
	// GRPC is the replica's gRPC address on loopback (Inspect).
	GRPC string
	// NodeAddr is its address as the node agents dial it.
	NodeAddr string
	// Log is its log file.
	Log string
	// HTTP is its /healthz, /readyz and /metrics address on loopback.
	HTTP string

	p     *proc
	relay *relay
	// api is the relay the replica reaches the API server through, with
	// ReplicaOptions.FreezableAPIServer; nil otherwise.
	api *relay
}

// ReplicaOptions change how StartControlPlaneReplicaWith starts a replica.
type ReplicaOptions struct {
	// Args are extra control plane flags, after the first replica's.
	Args []string
	// FreezableAPIServer: the replica reaches the API server through a
	// relay of its own, which FreezeAPIServer turns into a blackhole.
	FreezableAPIServer bool
}

// StartControlPlaneReplica starts a second control-plane replica with the
// command line of the first (new ports) and relays it on
// GatewayIP:ControlPlaneReplicaPort. Agents reach it when their
// --control-plane list names that address.
func (c *Cluster) StartControlPlaneReplica(ctx context.Context) (*Replica, error) {
	return c.StartControlPlaneReplicaWith(ctx, ReplicaOptions{})
}

// StartControlPlaneReplicaWith is StartControlPlaneReplica with options.
func (c *Cluster) StartControlPlaneReplicaWith(ctx context.Context, opts ReplicaOptions) (_ *Replica, err error) {
	_, first := c.findProc("controlplane")
	if first == nil {
		return nil, errors.New("no control plane")
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	r := &Replica{GRPC: hostPort("127.0.0.1", ports[0]), HTTP: hostPort("127.0.0.1", ports[1]), NodeAddr: hostPort(GatewayIP, ControlPlaneReplicaPort)}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	kubeconfig := c.kubeconfig
	if opts.FreezableAPIServer {
		if kubeconfig, err = c.apiRelay(r, hostPort("127.0.0.1", ports[2])); err != nil {
			return nil, err
		}
	}
	var args []string
	for _, a := range first.cmd.Args {
		switch {
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=" + r.GRPC
		case strings.HasPrefix(a, "--http-listen="):
			a = "--http-listen=" + r.HTTP
		case strings.HasPrefix(a, "--kubeconfig="):
			a = "--kubeconfig=" + kubeconfig
		}
		args = append(args, a)
	}
	if r.p, err = startProc(c.logDir, "controlplane-2", "", append(args, opts.Args...)...); err != nil {
		return nil, err
	}
	r.Log = r.p.logPath
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, r.p, "http://"+r.HTTP+"/readyz", nil); err != nil {
		return nil, fmt.Errorf("control plane replica: %w", err)
	}
	if r.relay, err = startRelay(c.netNS, r.NodeAddr, r.GRPC); err != nil {
		return nil, fmt.Errorf("control plane replica relay: %w", err)
	}
	return r, nil
}

// apiRelay starts the replica's own relay to the API server on listen
// (loopback) and writes a kubeconfig pointing at it.
func (c *Cluster) apiRelay(r *Replica, listen string) (string, error) {
	var err error
	if r.api, err = startLocalRelay(listen, hostPort("127.0.0.1", c.apiPort)); err != nil {
		return "", fmt.Errorf("api server relay of the replica: %w", err)
	}
	path := filepath.Join(c.work, "controlplane-2.kubeconfig")
	if err := c.pki.kubeconfig(path, "https://"+listen); err != nil {
		return "", fmt.Errorf("kubeconfig of the replica: %w", err)
	}
	return path, nil
}

// FreezeAPIServer makes the replica's API server relay a blackhole: its
// connections stay open, but nothing new is served and nothing is
// forwarded, so its watches stall without an error (no events, no
// bookmarks). The replica must have been started with FreezableAPIServer.
func (r *Replica) FreezeAPIServer() error {
	if r.api == nil {
		return errors.New("replica started without FreezableAPIServer")
	}
	r.api.Freeze()
	return nil
}

// ThawAPIServer ends FreezeAPIServer.
func (r *Replica) ThawAPIServer() error {
	if r.api == nil {
		return errors.New("replica started without FreezableAPIServer")
	}
	r.api.Thaw()
	return nil
}

// Readyz is the replica's /readyz: status code and body.
func (r *Replica) Readyz(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.HTTP+"/readyz", nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Running reports whether the replica is alive.
func (r *Replica) Running() bool { return r.p != nil && !r.p.exited() }

// PID is the replica's pid, 0 when it is not running.
func (r *Replica) PID() int {
	if !r.Running() {
		return 0
	}
	return r.p.cmd.Process.Pid
}

// Stop stops the replica and its relays.
func (r *Replica) Stop() {
	if r.p != nil {
		r.p.stop(10 * time.Second)
	}
	for _, rl := range []**relay{&r.relay, &r.api} {
		if *rl != nil {
			(*rl).Close()
			*rl = nil
		}
	}
}

// withNFT runs fn with an nftables connection inside the node's namespace.
func (c *Cluster) withNFT(node string, fn func(*nftables.Conn) error) error {
	n, ok := c.node(node)
	if !ok {
		return fmt.Errorf("no node %q", node)
	}
	h, err := netns.GetFromName(n.NetNS)
	if err != nil {
		return fmt.Errorf("netns of %s: %w", node, err)
	}
	defer func() { _ = h.Close() }()
	conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", node, err)
	}
	return fn(conn)
}

// DeleteDoormanTable deletes doorman's table in the node's namespace, as a
// reboot (or an operator running `nft delete table inet doorman`) would.
func (c *Cluster) DeleteDoormanTable(node string) error {
	return c.withNFT(node, func(conn *nftables.Conn) error {
		conn.DelTable(&nftables.Table{Family: DoormanTableFamily, Name: DoormanTableName})
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("delete table inet doorman on %s: %w", node, err)
		}
		return nil
	})
}

// DeleteDoormanElement deletes the elements of one of doorman's maps or
// sets whose key starts with keyPrefix (raw key bytes), from outside the
// agent. It returns how many it deleted.
func (c *Cluster) DeleteDoormanElement(node, set string, keyPrefix []byte) (int, error) {
	var n int
	err := c.withNFT(node, func(conn *nftables.Conn) error {
		s, els, err := doormanSet(conn, node, set)
		if err != nil {
			return err
		}
		var del []nftables.SetElement
		for _, e := range els {
			if len(e.Key) >= len(keyPrefix) && string(e.Key[:len(keyPrefix)]) == string(keyPrefix) {
				del = append(del, nftables.SetElement{Key: e.Key})
			}
		}
		if len(del) == 0 {
			return nil
		}
		if err := conn.SetDeleteElements(s, del); err != nil {
			return err
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("delete elements of %s on %s: %w", set, node, err)
		}
		n = len(del)
		return nil
	})
	return n, err
}

// NFTGeneration reads the nftables generation of the node's namespace: it
// grows by one with every committed transaction there, so an unchanged
// generation proves nobody changed any table.
func (c *Cluster) NFTGeneration(node string) (uint32, error) {
	n, ok := c.node(node)
	if !ok {
		return 0, fmt.Errorf("no node %q", node)
	}
	var gen uint32
	err := inNetNS(n.NetNS, func() error {
		conn, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
		if err != nil {
			return fmt.Errorf("netfilter socket: %w", err)
		}
		defer func() { _ = conn.Close() }()
		msgs, err := conn.Execute(netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
				Flags: netlink.Request,
			},
			Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
		})
		if err != nil {
			return fmt.Errorf("get nftables generation: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				return err
			}
			ad.ByteOrder = binary.BigEndian
			for ad.Next() {
				if ad.Type() == unix.NFTA_GEN_ID {
					gen = ad.Uint32()
					return nil
				}
			}
			return ad.Err()
		}
		return errors.New("get nftables generation: no answer")
	})
	return gen, err
}

// TableSnapshot is doorman's table as read over netlink: every object with
// its kernel handle (a rewritten object gets a new one) and every element.
type TableSnapshot struct {
	Exists   bool
	Objects  []string // "chain NAME handle H", "rule CHAIN handle H", "set NAME handle H"
	Elements map[string][]string
}

// ReadDoormanTable reads doorman's table in the node's namespace.
func (c *Cluster) ReadDoormanTable(node string) (*TableSnapshot, error) {
	snap := &TableSnapshot{Elements: map[string][]string{}}
	err := c.withNFT(node, func(conn *nftables.Conn) error {
		t, err := conn.ListTableOfFamily(DoormanTableName, DoormanTableFamily)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), "no such file") {
				return nil
			}
			return fmt.Errorf("table on %s: %w", node, err)
		}
		snap.Exists = true
		snap.Objects = append(snap.Objects, fmt.Sprintf("table %s flags %d use %d", t.Name, t.Flags, t.Use))
		chains, err := conn.ListChainsOfTableFamily(DoormanTableFamily)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != DoormanTableName {
				continue
			}
			snap.Objects = append(snap.Objects, fmt.Sprintf("chain %s type %s", ch.Name, ch.Type))
			rules, err := conn.GetRules(t, ch)
			if err != nil {
				return fmt.Errorf("rules of %s: %w", ch.Name, err)
			}
			for _, r := range rules {
				snap.Objects = append(snap.Objects, fmt.Sprintf("rule %s handle %d", ch.Name, r.Handle))
			}
		}
		sets, err := conn.GetSets(t)
		if err != nil {
			return err
		}
		for _, s := range sets {
			snap.Objects = append(snap.Objects, fmt.Sprintf("set %s id %d", s.Name, s.ID))
			els, err := conn.GetSetElements(s)
			if err != nil {
				return fmt.Errorf("elements of %s: %w", s.Name, err)
			}
			var out []string
			for _, e := range els {
				out = append(out, fmt.Sprintf("%x:%x:%v", e.Key, e.Val, verdictString(e)))
			}
			slices.Sort(out)
			snap.Elements[s.Name] = out
		}
		slices.Sort(snap.Objects)
		return nil
	})
	return snap, err
}

func verdictString(e nftables.SetElement) string {
	if e.VerdictData == nil {
		return ""
	}
	return fmt.Sprintf("%d/%s", e.VerdictData.Kind, e.VerdictData.Chain)
}

// Diff lists what differs between two snapshots, one line per object or
// element.
func (s *TableSnapshot) Diff(o *TableSnapshot) []string {
	var out []string
	if s.Exists != o.Exists {
		out = append(out, fmt.Sprintf("table exists %t → %t", s.Exists, o.Exists))
	}
	out = append(out, diffSorted("object", s.Objects, o.Objects)...)
	names := map[string]bool{}
	for n := range s.Elements {
		names[n] = true
	}
	for n := range o.Elements {
		names[n] = true
	}
	for n := range names {
		out = append(out, diffSorted("element of "+n, s.Elements[n], o.Elements[n])...)
	}
	slices.Sort(out)
	return out
}

func diffSorted(what string, a, b []string) []string {
	in := func(list []string) map[string]int {
		m := map[string]int{}
		for _, x := range list {
			m[x]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for k, n := range ma {
		if mb[k] < n {
			out = append(out, "- "+what+" "+k)
		}
	}
	for k, n := range mb {
		if ma[k] < n {
			out = append(out, "+ "+what+" "+k)
		}
	}
	return out
}

// NodeNetNSPath is the bind-mounted path of a node's namespace (for nft
// run through `ip netns exec`).
func (c *Cluster) NodeNetNSPath(node string) (string, error) {
	n, ok := c.node(node)
	if !ok {
		return "", fmt.Errorf("no node %q", node)
	}
	p := "/run/netns/" + n.NetNS
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/wait"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// nodeStatus is what a control-plane replica says of every node.
func nodeStatuses(ctx context.Context, cpGRPC string) (map[string]*doormanv1.NodeStatus, error) {
	conn, err := grpc.NewClient("passthrough:///"+cpGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	r, err := doormanv1.NewInspectServiceClient(conn).ListNodes(ctx, &doormanv1.ListNodesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", cpGRPC, err)
	}
	out := map[string]*doormanv1.NodeStatus{}
	for _, n := range r.GetNodes() {
		out[n.GetName()] = n
	}
	return out, nil
}

// viewDigests returns the control plane's digest of a node's view and the
// agent's digest of the view it holds.
func (s *soak) viewDigests(ctx context.Context, cpGRPC, node string) (cp, agent uint64, err error) {
	conn, err := grpc.NewClient("passthrough:///"+cpGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = conn.Close() }()
	v, err := doormanv1.NewInspectServiceClient(conn).GetNodeView(ctx, &doormanv1.GetNodeViewRequest{NodeName: node})
	if err != nil {
		return 0, 0, fmt.Errorf("view of %s on %s: %w", node, cpGRPC, err)
	}
	ac, err := grpc.NewClient("unix://"+s.c.AgentInspectSocket(node), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = ac.Close() }()
	st, err := doormanv1.NewAgentInspectServiceClient(ac).GetState(ctx, &doormanv1.GetStateRequest{})
	if err != nil {
		return 0, 0, fmt.Errorf("state of the agent on %s: %w", node, err)
	}
	return v.GetViewDigest(), st.GetViewDigest(), nil
}

// converged waits until every node's agent is connected to the replica at
// cpGRPC, has acknowledged all it was sent, and holds the view the
// replica computed for it (same digest).
func (s *soak) converged(ctx context.Context, cpGRPC string, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = s.convergedNow(ctx, cpGRPC)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not converged with %s within %s: %w", cpGRPC, timeout, errors.Join(err, last))
	}
	return nil
}

func (s *soak) convergedNow(ctx context.Context, cpGRPC string) error {
	st, err := nodeStatuses(ctx, cpGRPC)
	if err != nil {
		return err
	}
	for _, n := range s.c.Nodes() {
		ns := st[n.Name]
		if !ns.GetConnected() || ns.GetAckedVersion() == 0 || ns.GetAckedVersion() < ns.GetDesiredVersion() || ns.GetInFlightVersion() != 0 {
			return fmt.Errorf("%s: connected=%t desired=%d acked=%d in flight=%d", n.Name,
				ns.GetConnected(), ns.GetDesiredVersion(), ns.GetAckedVersion(), ns.GetInFlightVersion())
		}
		cp, agent, err := s.viewDigests(ctx, cpGRPC, n.Name)
		if err != nil {
			return err
		}
		if cp != agent {
			return fmt.Errorf("%s: the agent's view digest %x, the control plane's %x", n.Name, agent, cp)
		}
	}
	return nil
}

// waitConnected waits until every node's agent has a stream to the
// replica at cpGRPC.
func (s *soak) waitConnected(ctx context.Context, cpGRPC string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		st, err := nodeStatuses(ctx, cpGRPC)
		if err != nil {
			return false, nil //nolint:nilerr // the replica may be between streams: ask again
		}
		for _, n := range s.c.Nodes() {
			if !st[n.Name].GetConnected() {
				return false, nil
			}
		}
		return true, nil
	})
}

// checkLost proves no update was lost: every node converges with the
// primary (by digest), and each node's kernel holds exactly the endpoints
// the workload last wrote for every Service (a full listing of the
// endpoints map).
func (s *soak) checkLost(ctx context.Context) error {
	if err := s.converged(ctx, s.replica.GRPC, 2*time.Minute); err != nil {
		return fmt.Errorf("lost updates: %w", err)
	}
	want := s.wantEndpoints()
	var errs []error
	for _, n := range s.c.Nodes() {
		bad, err := s.listingDiffers(n.NetNS, want)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		if len(bad) > 0 {
			errs = append(errs, fmt.Errorf("%s: %d of %d Services differ from what was written, e.g. %s", n.Name, len(bad), len(want), bad[0]))
			continue
		}
		fmt.Printf("%s: the view digest matches the control plane's; every one of %d Services holds the endpoints last written\n", n.Name, len(want))
	}
	return errors.Join(errs...)
}

// wantEndpoints is, for each Service's ClusterIP, its endpoints as last
// written, sorted.
func (s *soak) wantEndpoints() map[netip.Addr][]netip.Addr {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	out := make(map[netip.Addr][]netip.Addr, len(s.w.slices))
	for i, sl := range s.w.slices {
		var eps []netip.Addr
		for _, e := range sl.Endpoints {
			eps = append(eps, netip.MustParseAddr(e.Addresses[0]))
		}
		slices.SortFunc(eps, netip.Addr.Compare)
		out[s.w.ips[i]] = eps
	}
	return out
}

// listingDiffers reads the whole service-endpoints map of a node and
// returns the Services whose endpoints there are not those wanted.
func (s *soak) listingDiffers(netns string, want map[netip.Addr][]netip.Addr) ([]string, error) {
	k, err := doormanKernel(netns)
	if err != nil {
		return nil, err
	}
	defer k.close()
	elems, err := k.elements("service-endpoints")
	if err != nil {
		return nil, err
	}
	got := map[netip.Addr][]netip.Addr{}
	for _, e := range elems {
		if len(e.Key) < 4 || len(e.Val) < 4 {
			continue
		}
		ip := netip.AddrFrom4([4]byte(e.Key[:4]))
		if _, ours := want[ip]; ours {
			got[ip] = append(got[ip], netip.AddrFrom4([4]byte(e.Val[:4])))
		}
	}
	var bad []string
	for ip, eps := range want {
		g := got[ip]
		slices.SortFunc(g, netip.Addr.Compare)
		if !slices.Equal(g, eps) {
			bad = append(bad, fmt.Sprintf("%s: kernel %v, written %v", ip, g, eps))
		}
	}
	slices.Sort(bad)
	return bad, nil
}

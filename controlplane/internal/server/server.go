package server

import (
	"context"
	"errors"
	"io"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/view"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Register registers AgentService and InspectService on s, which must have
// been built with the Codec option.
func Register(s grpc.ServiceRegistrar, h *hub.Hub, log hclog.Logger, opts ...Option) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	enc := &encoder{budget: newBudget(frameBudgetBytes), wait: frameBudgetWait}
	doormanv1.RegisterAgentServiceServer(s, &agent{hub: h, enc: enc, log: log.Named("agent"), sent: o.sent})
	doormanv1.RegisterInspectServiceServer(s, &inspect{hub: h, config: o.config})
}

// An Option adds to what Register serves.
type Option func(*options)

type options struct {
	config *config.Effective
	sent   func(*wire.Update)
}

// WithConfiguration makes InspectService's GetConfig answer with the
// control plane's effective configuration (without it: Unavailable).
func WithConfiguration(c *config.Effective) Option {
	return func(o *options) { o.config = c }
}

// WithSent calls f with each update once it was written to an agent's
// stream (the metrics time it).
func WithSent(f func(*wire.Update)) Option {
	return func(o *options) { o.sent = f }
}

type agent struct {
	doormanv1.UnimplementedAgentServiceServer
	hub  *hub.Hub
	enc  *encoder
	log  hclog.Logger
	sent func(*wire.Update)
}

// Sync serves one node: the Hello opens a session; then frames go out when
// the session has one, Acks and Nacks come in on a second goroutine.
func (a *agent) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message must be a hello")
	}
	sess, err := a.hub.Open(ctx, hello)
	if err != nil {
		if skew := (*version.SkewError)(nil); errors.As(err, &skew) {
			a.log.Warn("agent refused: stream protocol not served", "node", skew.Node, "error", err)
		}
		return toStatus(err)
	}
	defer sess.Close()

	received := make(chan error, 1)
	go func() { received <- a.receive(stream, sess) }()
	for {
		u, err := sess.NextUpdate()
		if err != nil {
			return toStatus(err)
		}
		if u != nil {
			frame, err := a.enc.encode(ctx, u)
			if err != nil {
				return toStatus(err)
			}
			if err := stream.SendMsg(frame); err != nil {
				return err
			}
			if a.sent != nil {
				a.sent(u)
			}
			continue
		}
		select {
		case <-sess.Wake():
		case err := <-received:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return toStatus(err)
		case <-a.hub.Closed():
			return status.Error(codes.Unavailable, hub.ErrClosed.Error())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (a *agent) receive(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse], sess *hub.Session) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m := req.GetMessage().(type) {
		case *doormanv1.SyncRequest_Ack:
			err = sess.Ack(m.Ack)
		case *doormanv1.SyncRequest_Nack:
			err = sess.Nack(m.Nack)
		default:
			err = status.Error(codes.InvalidArgument, "only ack and nack may follow the hello")
		}
		if err != nil {
			a.log.Warn("ending stream", "node", sess.Node(), "error", err)
			return err
		}
	}
}

func toStatus(err error) error {
	if _, ok := status.FromError(err); ok && err != nil {
		return err
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*version.SkewError)):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, differ.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, differ.ErrStale):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, hub.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, view.ErrUnknownNode), errors.Is(err, hub.ErrNoService):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

type inspect struct {
	doormanv1.UnimplementedInspectServiceServer
	hub    *hub.Hub
	config *config.Effective
}

func (i *inspect) GetConfig(context.Context, *doormanv1.GetConfigRequest) (*doormanv1.GetConfigResponse, error) {
	if i.config == nil {
		return nil, status.Error(codes.Unavailable, "no configuration recorded")
	}
	text, err := i.config.YAML()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "configuration: %v", err)
	}
	return &doormanv1.GetConfigResponse{
		ApiVersion: config.APIVersion, Kind: i.config.Kind, Path: i.config.Path,
		Yaml: string(text), Fields: i.config.Strings(),
	}, nil
}

func (i *inspect) ListNodes(context.Context, *doormanv1.ListNodesRequest) (*doormanv1.ListNodesResponse, error) {
	version, nodes := i.hub.Nodes()
	out := &doormanv1.ListNodesResponse{Version: version}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, &doormanv1.NodeStatus{
			Name:            n.Node,
			Connected:       n.Connected,
			DesiredVersion:  n.Desired,
			AckedVersion:    n.Acked,
			Lag:             n.Lag(),
			InFlightVersion: n.InFlight,
			LastNack:        n.LastNack,
			LastNackVersion: n.LastNackVersion,
			NotProgrammed:   n.NotProgrammed,
			Entries:         uint32(n.Entries),
			AgentVersion:    n.AgentVersion,
			AgentProtocol:   n.AgentProtocol,
		})
	}
	return out, nil
}

func (i *inspect) GetNodeView(_ context.Context, req *doormanv1.GetNodeViewRequest) (*doormanv1.GetNodeViewResponse, error) {
	nv, err := i.hub.NodeView(req.GetNodeName())
	if err != nil {
		return nil, toStatus(err)
	}
	entries, err := decode(nv.Entries)
	if err != nil {
		return nil, toStatus(err)
	}
	return &doormanv1.GetNodeViewResponse{NodeName: nv.Node, Version: nv.Version, ViewDigest: nv.ViewDigest, Entries: entries}, nil
}

func (i *inspect) GetService(_ context.Context, req *doormanv1.GetServiceRequest) (*doormanv1.GetServiceResponse, error) {
	nodes, err := i.hub.Service(req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &doormanv1.GetServiceResponse{}
	for _, n := range nodes {
		entries, err := decode(n.Entries)
		if err != nil {
			return nil, toStatus(err)
		}
		out.Nodes = append(out.Nodes, &doormanv1.NodeServiceView{NodeName: n.Node, Entries: entries})
	}
	for _, c := range i.hub.ServiceConflicts(req.GetNamespace(), req.GetName()) {
		out.AddressConflicts = append(out.AddressConflicts, &doormanv1.AddressConflict{
			Address: c.Frontend.Addr.String(), Protocol: c.Frontend.Protocol, Port: c.Frontend.Port,
			Claim: c.Claim.String(), Owner: c.Owner, OwnerClaim: c.OwnerClaim.String(),
		})
	}
	return out, nil
}

func decode(in []*wire.Entry) ([]*doormanv1.Entry, error) {
	out := make([]*doormanv1.Entry, 0, len(in))
	for _, e := range in {
		m, err := e.Message()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Command echo is the e2e suite's Pod on real clusters (doorman's echo
// image): it serves package echo's protocol on the given TCP and UDP ports
// and the control endpoint (echo.Control) on its own port, which lets the
// suite send requests from the Pod, keep flows open there and flip the
// Pod's readiness through its readiness probe.
//
//	echo -tcp 8080,9080 -udp 8081 -control :19090
//
// On SIGTERM it keeps serving: a terminating Pod serves until its grace
// period ends and the kubelet kills it, which is what the suite's
// terminating-endpoint tests observe.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/e2e/echo"
)

func main() {
	defaultName := os.Getenv("POD_NAME")
	if defaultName == "" {
		defaultName, _ = os.Hostname()
	}
	var (
		name    = flag.String("name", defaultName, "name answered to \"hostname\" (default: $POD_NAME, then the hostname)")
		tcp     = flag.String("tcp", "", "TCP ports serving HTTP, comma-separated")
		udp     = flag.String("udp", "", "UDP ports, comma-separated")
		control = flag.String("control", ":19090", "address of the control endpoint (\"\" = off)")
		ready   = flag.Bool("ready", true, "what /readyz answers at start")
	)
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "echo", Level: hclog.Info})
	if err := run(log, *name, *tcp, *udp, *control, *ready); err != nil {
		log.Error("echo failed", "error", err)
		os.Exit(1)
	}
}

func run(log hclog.Logger, name, tcp, udp, control string, ready bool) error {
	tcpPorts, err := ports(tcp)
	if err != nil {
		return fmt.Errorf("-tcp: %w", err)
	}
	udpPorts, err := ports(udp)
	if err != nil {
		return fmt.Errorf("-udp: %w", err)
	}
	srv := echo.NewServer(name)
	defer func() { _ = srv.Close() }()
	// ":port" listens on every address of both families.
	for _, p := range tcpPorts {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		srv.ServeTCP(ln)
	}
	for _, p := range udpPorts {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		srv.ServeUDP(pc)
	}
	ctl := echo.NewControl(ready)
	defer func() { _ = ctl.Close() }()
	if control != "" {
		ln, err := net.Listen("tcp", control)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		hs := &http.Server{Handler: ctl.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer func() { _ = hs.Shutdown(context.Background()) }()
	}
	log.Info("serving", "name", name, "tcp", tcpPorts, "udp", udpPorts, "control", control)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	for s := range sigs {
		if s == os.Interrupt {
			return nil
		}
		log.Info("terminating: serving until the grace period ends")
	}
	return nil
}

func ports(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"
)

// connectCost times TCP connect + one HTTP request + the answer to EOF
// over several paths, taking one attempt on each path in turn so drift in
// the machine's load hits all alike. It returns each path's median and the
// failed attempts.
//
// The benchmark's paths, all to the same echo Pods on a node no proxy
// runs on: the Service path (a ClusterIP from a Pod on the proxy's node),
// the direct path (a Pod IP from the same Pod: traffic to a non-Service
// destination, still through the proxy's rules) and the no-proxy path (a
// Pod IP from a Pod on a node no proxy has ever run on: the floor).
type connectPath struct {
	inNS  func(func() error) error // runs a function in the client's network namespace
	addrs []string                 // host:port, dialled in turn
}

type connectResult struct {
	Medians  []time.Duration // by path
	Failures int
}

func connectCost(paths []connectPath, rounds int) (connectResult, error) {
	res := connectResult{Medians: make([]time.Duration, len(paths))}
	took := make([][]time.Duration, len(paths))
	for i := range rounds {
		for p, path := range paths {
			err := path.inNS(func() error {
				d, err := oneRequest(path.addrs[i%len(path.addrs)])
				if err != nil {
					res.Failures++
					return nil
				}
				took[p] = append(took[p], d)
				return nil
			})
			if err != nil {
				return res, err
			}
		}
	}
	for p, t := range took {
		if len(t) == 0 {
			return res, fmt.Errorf("no successful connection on path %d of %d (%s, …; failures %d)", p+1, len(paths), paths[p].addrs[0], res.Failures)
		}
		res.Medians[p] = median(t)
	}
	return res, nil
}

func hostPorts(addrs []netip.Addr, port int) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = net.JoinHostPort(a.String(), fmt.Sprint(port))
	}
	return out
}

func oneRequest(addr string) (time.Duration, error) {
	t := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "GET /hostname HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: empty answer", addr)
	}
	return time.Since(t), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// percentile is the nearest-rank percentile p (0 < p ≤ 100).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

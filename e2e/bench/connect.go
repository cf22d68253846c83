package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"
)

// connectCost times TCP connect + one HTTP request + the answer to EOF,
// from inside a Pod's namespace, alternating between the Service path
// (ClusterIP:80 of a sample of Services) and the direct path (a Pod
// IP:8080), so drift in the machine's load hits both alike. It returns the
// median of each and the number of failed attempts.
type connectResult struct {
	Service, Direct time.Duration
	Failures        int
}

func connectCost(inNS func(func() error) error, services []netip.Addr, pods []netip.Addr, rounds int) (connectResult, error) {
	var res connectResult
	var svc, direct []time.Duration
	err := inNS(func() error {
		for i := range rounds {
			for _, path := range []struct {
				addr string
				out  *[]time.Duration
			}{
				{net.JoinHostPort(services[i%len(services)].String(), fmt.Sprint(servicePort)), &svc},
				{net.JoinHostPort(pods[i%len(pods)].String(), fmt.Sprint(podPort)), &direct},
			} {
				d, err := oneRequest(path.addr)
				if err != nil {
					res.Failures++
					continue
				}
				*path.out = append(*path.out, d)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if len(svc) == 0 || len(direct) == 0 {
		return res, fmt.Errorf("no successful connection (service %d, direct %d, failures %d)", len(svc), len(direct), res.Failures)
	}
	res.Service, res.Direct = median(svc), median(direct)
	return res, nil
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

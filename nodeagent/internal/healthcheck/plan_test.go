package healthcheck

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func entry(ns, name string, port string, fam doormanv1.IPFamily, hc uint32, local ...*doormanv1.Endpoint) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: ns, Name: name, PortName: port, Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: fam,
		ClusterIp: "10.96.0.1", Port: 80, ExternalPolicyLocal: hc != 0, HealthCheckNodePort: hc, LocalEndpoints: local}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func ready(ip string) *doormanv1.Endpoint { return &doormanv1.Endpoint{Ip: ip, Port: 80} }
func terminating(ip string) *doormanv1.Endpoint {
	return &doormanv1.Endpoint{Ip: ip, Port: 80, Terminating: true}
}

func viewOf(es ...*doormanv1.Entry) map[string]*doormanv1.Entry {
	m := map[string]*doormanv1.Entry{}
	for _, e := range es {
		m[e.GetKey()] = e
	}
	return m
}

const v4, v6 = doormanv1.IPFamily_IP_FAMILY_IPV4, doormanv1.IPFamily_IP_FAMILY_IPV6

func TestPlan(t *testing.T) {
	tests := []struct {
		name      string
		view      map[string]*doormanv1.Entry
		want      map[uint16]Service
		conflicts int
	}{
		{"none", viewOf(entry("a", "web", "http", v4, 0, ready("10.0.0.1"))), map[uint16]Service{}, 0},
		{"ready counted", viewOf(entry("a", "web", "http", v4, 32000, ready("10.0.0.1"), ready("10.0.0.2"))),
			map[uint16]Service{32000: {"a", "web", 2}}, 0},
		{"terminating not counted", viewOf(entry("a", "web", "http", v4, 32000, terminating("10.0.0.1"))),
			map[uint16]Service{32000: {"a", "web", 0}}, 0},
		{"ports and families share", viewOf(
			entry("a", "web", "http", v4, 32000, ready("10.0.0.1")),
			entry("a", "web", "https", v4, 32000, ready("10.0.0.1")),
			entry("a", "web", "http", v6, 32000, ready("fd00::1"))),
			map[uint16]Service{32000: {"a", "web", 1}}, 0},
		{"two services one port", viewOf(
			entry("a", "web", "http", v4, 32000, ready("10.0.0.1")),
			entry("b", "other", "http", v4, 32000)),
			map[uint16]Service{32000: {"a", "web", 1}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, conflicts := Plan(tc.view)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
			if len(conflicts) != tc.conflicts {
				t.Errorf("conflicts = %v, want %d", conflicts, tc.conflicts)
			}
		})
	}
}

func TestServeHTTP(t *testing.T) {
	tests := []struct {
		name string
		svc  Service
		code int
		body string
	}{
		{"healthy", Service{"a", "web", 2}, http.StatusOK, `{"service":{"namespace":"a","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}`},
		{"no local endpoints", Service{"a", "web", 0}, http.StatusServiceUnavailable, `{"service":{"namespace":"a","name":"web"},"localEndpoints":0,"serviceProxyHealthy":true}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &listener{svc: tc.svc}
			rec := httptest.NewRecorder()
			l.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code != tc.code {
				t.Errorf("status %d, want %d", rec.Code, tc.code)
			}
			if diff := cmp.Diff(tc.body, strings.TrimSpace(rec.Body.String())); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			var r response
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Errorf("body is not JSON: %v", err)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

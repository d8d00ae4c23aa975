package main

import "testing"

// TestServiceOfFindsTheServiceBehindAClusterInternalURL: the plugin
// port-forwards to a pod of the Service that spec.queue.nats.url names,
// also when it lists the servers of a cluster by pod name.
func TestServiceOfFindsTheServiceBehindAClusterInternalURL(t *testing.T) {
	tests := []struct {
		url                string
		service, namespace string
		port               int
	}{
		{"nats://nats.nats:4222", "nats", "nats", 4222},
		{"nats://nats.nats", "nats", "nats", 4222},
		{"tls://queue.team-a.svc:4443", "queue", "team-a", 4443},
		{"nats://nats.nats.svc.cluster.local:4222", "nats", "nats", 4222},
		{"nats://nats-0.nats.nats:4222,nats://nats-1.nats.nats:4222,nats://nats-2.nats.nats:4222", "nats", "nats", 4222},
		{"nats://nats-1.nats.nats.svc.cluster.local:4222", "nats", "nats", 4222},
		{"nats://127.0.0.1:4222, nats://nats-2.nats.nats:5222", "nats", "nats", 5222},
		// Not cluster-internal: addresses, localhost, public names.
		{"nats://127.0.0.1:4222", "", "", 0},
		{"nats://localhost:4222,nats://127.0.0.1:4223", "", "", 0},
		{"nats://demo.nats.io:4222", "", "", 0},
		{"nats://nats-a.nats.example:4222", "", "", 0},
		{"nats://a.b.c.svc:4222", "", "", 0},
	}
	for _, tt := range tests {
		svc, ns, port, ok := serviceOf(tt.url)
		if ok != (tt.service != "") || svc != tt.service || ns != tt.namespace || port != tt.port {
			t.Errorf("serviceOf(%q) = %q, %q, %d, %v; want %q, %q, %d", tt.url, svc, ns, port, ok, tt.service, tt.namespace, tt.port)
		}
		if clusterInternal(tt.url) != ok {
			t.Errorf("clusterInternal(%q) disagrees with serviceOf", tt.url)
		}
	}
}

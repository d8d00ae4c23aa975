package embedded_test

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tenire/loop-operator/worker/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A server started on the port and store of one shut down is a restart
// (internal/natstest's Restart): same URL, durable streams kept.
func TestRestartKeepsStreamsAndURL(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown() }()
	url := srv.URL()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "s.1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	port := portOf(t, url)
	srv.Shutdown()
	if srv, err = embedded.Start(embedded.Options{Port: port, StoreDir: dir}); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL changed across restart: %s -> %s", url, srv.URL())
	}
	s, err := js.Stream(t.Context(), "S")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil || string(m.Data) != "kept" {
		t.Errorf("message after restart = %v, %v", m, err)
	}
}

func TestStartNeedsAStore(t *testing.T) {
	if _, err := embedded.Start(embedded.Options{}); err == nil {
		t.Error("Start without StoreDir succeeded")
	}
}

func portOf(t *testing.T, u string) int {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(parsed.Port())
	if err != nil {
		t.Fatalf("no port in %s: %v", u, err)
	}
	return port
}

package natstest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenire/loop-operator/internal/natstest"
)

func TestRestartKeepsStreamsAndURL(t *testing.T) {
	srv := natstest.Start(t)
	url := srv.URL
	_, js := srv.Connect()
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "s.1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	if srv.URL != url || srv.Server.URL() != url {
		t.Errorf("URL changed across restart: %s -> %s, %s", url, srv.URL, srv.Server.URL())
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

func TestASecuredServerTakesItsOwnUsersCredentialsOnly(t *testing.T) {
	s := natstest.StartSecured(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nc, err := nats.Connect(s.URL, nats.UserCredentials(write("good.creds", s.Creds)))
	if err != nil {
		t.Fatalf("connecting with the trusted user's credentials: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Errorf("the trusted user has no JetStream: %v", err)
	}
	if nc, err := nats.Connect(s.URL, nats.UserCredentials(write("bad.creds", s.Untrusted))); err == nil {
		nc.Close()
		t.Error("a user of an untrusted account connected")
	}
	if nc, err := nats.Connect(s.URL); err == nil {
		nc.Close()
		t.Error("a client without credentials connected")
	}
}

package natstest_test

import (
	"testing"

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
	nc, err := s.Connect(t, s.Creds)
	if err != nil {
		t.Fatalf("connecting with the trusted user's credentials: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Errorf("the trusted user has no JetStream: %v", err)
	}
	if _, err := s.Connect(t, s.Untrusted); err == nil {
		t.Error("a user of an untrusted account connected")
	}
	if _, err := s.Connect(t, nil); err == nil {
		t.Error("a client without credentials connected")
	}
}

package natstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Secured is an embedded NATS server with JetStream in operator mode, as
// production servers run: it accepts only users whose JWT an account it
// trusts has signed, and only with the matching NKey seed.
type Secured struct {
	URL string
	// Creds is a credentials file (user JWT and seed, as `nsc` writes it) of
	// a user of the trusted account, with JetStream enabled.
	Creds []byte
	// Untrusted is a well-formed credentials file of a user of an account
	// the server does not trust: a credential that does not match.
	Untrusted []byte
}

// StartSecured runs a secured server for the test and shuts it down when
// the test ends.
func StartSecured(t testing.TB) *Secured {
	t.Helper()
	operator := mustKey(t, nkeys.CreateOperator)
	opPub := publicKey(t, operator)
	opClaims := jwt.NewOperatorClaims(opPub)
	if _, err := opClaims.Encode(operator); err != nil {
		t.Fatalf("natstest: operator: %v", err)
	}

	sys, sysJWT := account(t, operator, false)
	app, appJWT := account(t, operator, true)
	resolver := &server.MemAccResolver{}
	opts := &server.Options{
		Host:             "127.0.0.1",
		Port:             server.RANDOM_PORT,
		NoLog:            true,
		NoSigs:           true,
		JetStream:        true,
		StoreDir:         t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver:  resolver,
		SystemAccount:    publicKey(t, sys),
	}
	for pub, claims := range map[string]string{publicKey(t, sys): sysJWT, publicKey(t, app): appJWT} {
		if err := resolver.Store(pub, claims); err != nil {
			t.Fatalf("natstest: storing account %s: %v", pub, err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: secured server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: the secured server is not ready")
	}
	foreign, _ := account(t, mustKey(t, nkeys.CreateOperator), true)
	return &Secured{URL: srv.ClientURL(), Creds: userCreds(t, app), Untrusted: userCreds(t, foreign)}
}

// account creates an account signed by operator, with unlimited JetStream
// when js, and returns its key and JWT.
func account(t testing.TB, operator nkeys.KeyPair, js bool) (nkeys.KeyPair, string) {
	t.Helper()
	kp := mustKey(t, nkeys.CreateAccount)
	claims := jwt.NewAccountClaims(publicKey(t, kp))
	if js {
		claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	encoded, err := claims.Encode(operator)
	if err != nil {
		t.Fatalf("natstest: account: %v", err)
	}
	return kp, encoded
}

// userCreds returns the credentials file of a new user of the account.
func userCreds(t testing.TB, acc nkeys.KeyPair) []byte {
	t.Helper()
	user := mustKey(t, nkeys.CreateUser)
	claims := jwt.NewUserClaims(publicKey(t, user))
	encoded, err := claims.Encode(acc)
	if err != nil {
		t.Fatalf("natstest: user: %v", err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatalf("natstest: user seed: %v", err)
	}
	creds, err := jwt.FormatUserConfig(encoded, seed)
	if err != nil {
		t.Fatalf("natstest: credentials: %v", err)
	}
	return creds
}

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatalf("natstest: key: %v", err)
	}
	return kp
}

func publicKey(t testing.TB, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatalf("natstest: public key: %v", err)
	}
	return pub
}

// Connect connects with a credentials file's contents (Creds, Untrusted or
// none when nil), closed when the test ends.
func (s *Secured) Connect(t testing.TB, creds []byte) (*nats.Conn, error) {
	t.Helper()
	var opts []nats.Option
	if creds != nil {
		file := filepath.Join(t.TempDir(), "nats.creds")
		if err := os.WriteFile(file, creds, 0o600); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		opts = append(opts, nats.UserCredentials(file))
	}
	nc, err := nats.Connect(s.URL, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

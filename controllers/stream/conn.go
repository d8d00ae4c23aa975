package stream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// conns keeps one NATS connection per server and credentials, shared by
// the LoopDeployments that use them.
type conns struct {
	mu    sync.Mutex
	byKey map[string]*nats.Conn
	// timeout bounds a dial.
	timeout time.Duration
}

func connKey(url string, creds []byte) string {
	h := sha256.Sum256(creds)
	return url + "#" + hex.EncodeToString(h[:8])
}

// get returns the JetStream context of a connection to url with creds
// (nil for none), dialling once.
func (c *conns) get(url string, creds []byte) (jetstream.JetStream, error) {
	key := connKey(url, creds)
	c.mu.Lock()
	defer c.mu.Unlock()
	nc := c.byKey[key]
	if nc != nil && nc.IsClosed() {
		delete(c.byKey, key)
		nc = nil
	}
	if nc == nil {
		opts := []nats.Option{nats.Name("tenire-loop-operator"), nats.Timeout(c.timeout),
			nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(false)}
		if len(creds) > 0 {
			o, err := credentialsOption(creds)
			if err != nil {
				return nil, err
			}
			opts = append(opts, o)
		}
		var err error
		if nc, err = nats.Connect(url, opts...); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
		}
		if c.byKey == nil {
			c.byKey = map[string]*nats.Conn{}
		}
		c.byKey[key] = nc
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream on %s: %w", redact(url), err)
	}
	return js, nil
}

// drop closes the connection of url and creds, so that the next get dials
// again (after an authorization failure: the Secret may have changed).
func (c *conns) drop(url string, creds []byte) {
	key := connKey(url, creds)
	c.mu.Lock()
	defer c.mu.Unlock()
	if nc := c.byKey[key]; nc != nil {
		nc.Close()
		delete(c.byKey, key)
	}
}

// closeAll closes every connection.
func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, nc := range c.byKey {
		nc.Close()
		delete(c.byKey, k)
	}
}

// ErrBadCredentials is wrapped when the credentials Secret does not hold a
// NATS credentials file.
var ErrBadCredentials = errors.New("the credentials are not a NATS credentials file (a user JWT and its NKey seed)")

// credentialsOption authenticates with the user JWT and seed of a NATS
// credentials file's contents, kept in memory.
func credentialsOption(creds []byte) (nats.Option, error) {
	userJWT, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	kp, err := nkeys.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	return nats.UserJWT(
		func() (string, error) { return userJWT, nil },
		func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) },
	), nil
}

// redact drops user information from a URL for messages.
func redact(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if at := strings.LastIndex(url[i+3:], "@"); at >= 0 {
			return url[:i+3] + "***@" + url[i+3+at+1:]
		}
	}
	return url
}

// withTimeout bounds one step of a poll.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

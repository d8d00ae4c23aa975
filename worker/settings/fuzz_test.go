package settings_test

import (
	"errors"
	"testing"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/settings"
)

// FuzzParse decodes settings documents: a document is rejected with
// ErrInvalid or, once accepted, encodes to JSON that decodes to the same
// JSON; Config rejects with ErrInvalid or gives a config that loop.New
// accepts or rejects with ErrInvalidConfig. Nothing panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(`{"name": "d", "namespace": "n", "queue": {"nats": {"url": "nats://x"}}}`))
	f.Add([]byte("name: d\nnamespace: n\nloop:\n  taskTimeout: 1m\n  scheduling: Strict\n"))
	f.Add([]byte(`{"loop": {"pool": {"maxWorkers": -1}, "kindLimits": {"x": 0}}}`))
	f.Add([]byte(`{"loop": {"taskTimeout": "-5s"}, "drainTimeout": "soon"}`))
	f.Add([]byte(`{"unknown": true}`))
	f.Add([]byte(`{"loop": {"priorities": [{"name": "High", "weight": 2}]}}`))
	f.Add([]byte("[1, 2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := settings.Parse(data)
		if err != nil {
			if !errors.Is(err, settings.ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			return
		}
		j, err := settings.JSON(s)
		if err != nil {
			t.Fatalf("JSON of accepted settings = %v", err)
		}
		s2, err := settings.Parse([]byte(j))
		if err != nil {
			t.Fatalf("Parse(JSON(s)) = %v for %s", err, j)
		}
		if j2, _ := settings.JSON(s2); j2 != j {
			t.Errorf("JSON round trip changed the settings:\n%s\n%s", j, j2)
		}
		c, err := settings.Config(s)
		if err != nil {
			if !errors.Is(err, settings.ErrInvalid) {
				t.Errorf("Config = %v, want ErrInvalid", err)
			}
			return
		}
		c.Registry = nil
		if _, err := loop.New(c); err != nil && !errors.Is(err, loop.ErrInvalidConfig) {
			t.Errorf("loop.New = %v, want nil or ErrInvalidConfig", err)
		}
	})
}

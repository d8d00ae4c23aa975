package settings_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenire/loop-operator/worker/loop"
	"github.com/tenire/loop-operator/worker/pool"
	"github.com/tenire/loop-operator/worker/settings"
)

const full = `{
  "name": "demo", "namespace": "shop",
  "loop": {
    "pool": {"minWorkers": 0, "maxWorkers": 8, "idleTimeout": "45s", "prefetch": 4},
    "priorities": [{"name": "high", "weight": 3}, {"name": "low", "weight": 1}],
    "scheduling": "Strict",
    "kindLimits": {"resize": 2},
    "taskTimeout": "2m",
    "retry": {"maxAttempts": 7, "initialBackoff": "2s", "maxBackoff": "1m"},
    "circuitBreaker": {"failureThreshold": 4, "cooldown": "20s"}
  },
  "queue": {"nats": {"url": "nats://nats:4222", "ackWait": "40s", "maxAckPending": 50, "replicas": 3, "resultRetention": "2h"}},
  "stream": "LOOP_shop_demo", "subjectPrefix": "loops.shop.demo",
  "drainTimeout": "3m"
}`

func TestConfigMapsEveryField(t *testing.T) {
	s, err := settings.Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	c, err := settings.Config(s)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"the NATS URL is taken", c.NATSURL == "nats://nats:4222"},
		{"the resolved stream and prefix are taken", c.Stream == "LOOP_shop_demo" && c.SubjectPrefix == "loops.shop.demo"},
		{"an explicit minWorkers of zero is kept", c.MinWorkers == 0},
		{"the pool sizes are taken", c.MaxWorkers == 8 && c.IdleTimeout == 45*time.Second && c.Prefetch == 4},
		{"priorities keep their order and weights", len(c.Priorities) == 2 && c.Priorities[0] == pool.Class{Name: "high", Weight: 3}},
		{"strict scheduling is taken", c.Scheduling == pool.Strict},
		{"kind limits are taken", c.KindLimits["resize"] == 2},
		{"the retry policy is taken", c.Retry.MaxAttempts == 7 && c.Retry.InitialBackoff == 2*time.Second && c.Retry.MaxBackoff == time.Minute},
		{"the breaker is taken", c.BreakerThreshold == 4 && c.BreakerCooldown == 20*time.Second},
		{"queue settings are taken", c.AckWait == 40*time.Second && c.MaxAckPending == 50 && c.Replicas == 3},
		{"the result retention is taken", c.ResultRetention == 2*time.Hour},
		{"timeouts are taken", c.TaskTimeout == 2*time.Minute && c.DrainTimeout == 3*time.Minute},
		{"the loop is named namespace/name", c.Name == "shop/demo"},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s: config %+v", ch.name, c)
		}
	}
}

func TestPrefetchUnsetIsSizedToTheTasksAndZeroIsOff(t *testing.T) {
	for _, tt := range []struct {
		pool string
		want int
	}{
		{`{}`, 0},
		{`{"prefetch": 0}`, loop.PrefetchOff},
		{`{"prefetch": 7}`, 7},
	} {
		s, err := settings.Parse([]byte(`{"name":"demo","namespace":"shop","loop":{"pool":` + tt.pool + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		c, err := settings.Config(s)
		if err != nil {
			t.Fatal(err)
		}
		if c.Prefetch != tt.want {
			t.Errorf("pool %s: Config.Prefetch = %d, want %d", tt.pool, c.Prefetch, tt.want)
		}
	}
}

func TestNamesAreDerivedLikeTheOperatorWhenNotResolved(t *testing.T) {
	s, err := settings.Parse([]byte(`{"name":"demo","namespace":"shop","queue":{"nats":{"url":"nats://x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := settings.Config(s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream != "LOOP_shop_demo" || c.SubjectPrefix != "loops.shop.demo" {
		t.Errorf("names = %s, %s", c.Stream, c.SubjectPrefix)
	}
}

func TestBadSettingsAreRejectedClearly(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantText string
	}{
		{"a misspelt field is an error, not a default", `{"loop":{"pool":{"maxWorker":3}}}`, "maxWorker"},
		{"a duration without a unit is an error", `{"drainTimeout":"30"}`, "missing unit"},
		{"an unknown scheduling mode names the choices", `{"name":"a","namespace":"b","loop":{"scheduling":"Fair"}}`, "want Weighted or Strict"},
		{"a kind limit of zero names the kind", `{"name":"a","namespace":"b","loop":{"kindLimits":{"resize":0}}}`, "loop.kindLimits[resize]"},
		{"settings without names say which are needed", `{}`, "stream and subjectPrefix, or name and namespace"},
		{"a negative duration names the field", `{"name":"a","namespace":"b","loop":{"taskTimeout":"-1s"}}`, "loop.taskTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := settings.Parse([]byte(tt.doc))
			if err == nil {
				_, err = settings.Config(s)
			}
			if !errors.Is(err, settings.ErrInvalid) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error = %v, want ErrInvalid mentioning %q", err, tt.wantText)
			}
		})
	}
}

func TestFromEnvironment(t *testing.T) {
	if _, ok, err := settings.FromEnvironment(func(string) string { return "" }); ok || err != nil {
		t.Errorf("without LOOP_SETTINGS = %v, %v; want not set", ok, err)
	}
	env := map[string]string{"LOOP_SETTINGS": full}
	s, ok, err := settings.FromEnvironment(func(k string) string { return env[k] })
	if !ok || err != nil || s.Name != "demo" {
		t.Errorf("with LOOP_SETTINGS = %+v, %v, %v", s, ok, err)
	}
}

package loop_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenire/loop-operator/worker/loop"
)

func TestAdminAuthGuardsStatusAndDrain(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const remote, local, local6 = "10.1.2.3:40000", "127.0.0.1:40000", "[::1]:40000"
	tests := []struct {
		name       string
		token      string // Config.AdminToken
		tokenFile  string // Config.AdminTokenFile
		env        string // LOOP_ADMIN_TOKEN
		method     string
		path       string
		from       string
		auth       string
		wantCode   int
		wantInBody string
	}{
		{"a loopback client reads /status without a token", "", "", "", "GET", "/status", local, "", 200, `"state"`},
		{"an IPv6 loopback client reads /status without a token", "", "", "", "GET", "/status", local6, "", 200, `"state"`},
		{"a loopback client drains without a token", "", "", "", "POST", "/drain", local, "", 202, "requested"},
		{"a remote client reads /healthz", "", "", "", "GET", "/healthz", remote, "", 200, "ok"},
		{"a remote client reads /metrics", "", "", "", "GET", "/metrics", remote, "", 200, "tenire_loop_state"},
		{"a remote client gets an answer from /readyz", "", "", "", "GET", "/readyz", remote, "", 503, "not ready"},
		{"a remote client is refused /status when no token is configured", "", "", "", "GET", "/status", remote, "Bearer x", 403, "LOOP_ADMIN_TOKEN"},
		{"a remote client is refused /drain when no token is configured", "", "", "", "POST", "/drain", remote, "", 403, "loopback clients only"},
		{"a remote client with the token reads /status", "s3cret", "", "", "GET", "/status", remote, "Bearer s3cret", 200, `"state"`},
		{"a remote client with the token drains", "s3cret", "", "", "POST", "/drain", remote, "Bearer s3cret", 202, "requested"},
		{"a remote client without a token is unauthorized", "s3cret", "", "", "GET", "/status", remote, "", 401, "Authorization: Bearer"},
		{"a remote client with a wrong token is unauthorized", "s3cret", "", "", "POST", "/drain", remote, "Bearer s3cre", 401, "unauthorized"},
		{"a remote client with another scheme is unauthorized", "s3cret", "", "", "GET", "/status", remote, "Basic s3cret", 401, "unauthorized"},
		{"a token from a file is trimmed and accepted", "", tokenFile, "", "GET", "/status", remote, "Bearer from-file", 200, `"state"`},
		{"a token from the environment is accepted", "", "", "from-env", "GET", "/status", remote, "Bearer from-env", 200, `"state"`},
		{"an unreadable token file refuses remote clients", "", filepath.Join(t.TempDir(), "missing"), "", "GET", "/status", remote, "Bearer x", 500, "admin token unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(loop.EnvAdminToken, tt.env)
			t.Setenv(loop.EnvAdminTokenFile, "")
			l, err := loop.New(loop.Config{NATSURL: "nats://x", Stream: "S", SubjectPrefix: "p",
				AdminToken: tt.token, AdminTokenFile: tt.tokenFile})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil)
			req.RemoteAddr = tt.from
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			l.AdminHandler().ServeHTTP(rec, req)
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantInBody) {
				t.Errorf("%s %s from %s = %d %q, want %d containing %q", tt.method, tt.path, tt.from, rec.Code, rec.Body.String(), tt.wantCode, tt.wantInBody)
			}
			if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

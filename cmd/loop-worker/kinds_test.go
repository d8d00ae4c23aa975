package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/tenire/loop-operator/worker/loop"
)

func TestExecKind(t *testing.T) {
	var logged strings.Builder
	log := funcr.New(func(prefix, args string) { logged.WriteString(args + "\n") }, funcr.Options{})
	tests := []struct {
		name    string
		command string
		payload string
		wantErr string
		wantLog string
	}{
		{"a command that exits 0 succeeds and its output is logged", "sh -c cat", "hello", "", `"output"="hello"`},
		{"a non-zero exit fails with the exit code", `["sh", "-c", "exit 3"]`, "", "exit code 3", ""},
		{"output beyond the limit is dropped and counted", "sh -c cat", strings.Repeat("x", 100), "", `"droppedBytes"=68`},
		{"a missing command fails", "/does/not/exist", "", "no such file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logged.Reset()
			argv, err := execArgv(tt.command)
			if err != nil {
				t.Fatal(err)
			}
			err = execHandler(argv, 32, log)(t.Context(), &loop.Task{ID: "t", Kind: "exec", Payload: []byte(tt.payload)})
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(logged.String(), tt.wantLog) {
				t.Errorf("log = %s, want %s", logged.String(), tt.wantLog)
			}
		})
	}
}

func TestExecArgv(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{"words are split on spaces", "wc -c", []string{"wc", "-c"}, false},
		{"a JSON array keeps arguments with spaces", `["sh", "-c", "exit 3"]`, []string{"sh", "-c", "exit 3"}, false},
		{"an empty command turns the kind off", "", nil, false},
		{"a broken JSON array is an error", `["sh"`, nil, true},
		{"an empty JSON array is an error", `[]`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := execArgv(tt.in)
			if (err != nil) != tt.wantErr || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("execArgv(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestHTTPKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case "ok":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "nope", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	h := httpHandler(srv.Client(), srv.URL)
	if err := h(t.Context(), &loop.Task{ID: "a", Kind: "http", Payload: []byte("ok")}); err != nil {
		t.Errorf("a 2xx answer = %v, want success", err)
	}
	if err := h(t.Context(), &loop.Task{ID: "b", Kind: "http", Payload: []byte("fail")}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a 503 answer = %v, want a failure naming it", err)
	}
}

func TestSleepKindRejectsBadPayloadsForGood(t *testing.T) {
	for _, payload := range []string{``, `{}`, `{"ms":-1}`, `nope`} {
		err := sleepHandler(t.Context(), &loop.Task{Payload: []byte(payload)})
		if !errors.Is(err, loop.ErrPermanent) {
			t.Errorf("payload %q: err = %v, want ErrPermanent", payload, err)
		}
	}
	if err := sleepHandler(t.Context(), &loop.Task{Payload: []byte(`{"ms":1}`)}); err != nil {
		t.Errorf("a good payload = %v", err)
	}
	if err := countHandler(logr.Discard())(t.Context(), &loop.Task{Payload: []byte(`{"to":-1}`)}); !errors.Is(err, loop.ErrPermanent) {
		t.Errorf("count with a negative target = %v, want ErrPermanent", err)
	}
}

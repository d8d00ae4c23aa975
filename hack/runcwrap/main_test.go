package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSpecFileFindsTheBundleOrTheProcessFileAfterRuncsGlobalOptions(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		file         string
		underProcess bool
	}{
		{[]string{"--root", "/run/r", "--log", "/l.json", "--log-format", "json", "--systemd-cgroup", "create", "--bundle", "/b", "--pid-file", "/p", "id"}, "/b/config.json", true},
		{[]string{"--root=/run/r", "create", "-b", "/b2", "id"}, "/b2/config.json", true},
		{[]string{"run", "--bundle=/b3", "id"}, "/b3/config.json", true},
		{[]string{"create", "id"}, "config.json", true},
		{[]string{"--root", "/run/r", "exec", "--process", "/tmp/proc.json", "--detach", "id"}, "/tmp/proc.json", false},
		{[]string{"exec", "-p=/tmp/p2.json", "id"}, "/tmp/p2.json", false},
		{[]string{"exec", "id", "sh"}, "", false}, // a command line, not a process file: nothing to edit
		{[]string{"--root", "/run/r", "start", "id"}, "", false},
		{[]string{"--root", "/run/r", "delete", "--force", "id"}, "", false},
		{[]string{"--version"}, "", false},
		{nil, "", false},
	} {
		file, under := specFile(tc.args)
		if file != tc.file || under != tc.underProcess {
			t.Errorf("specFile(%q) = %q, %v; want %q, %v", tc.args, file, under, tc.file, tc.underProcess)
		}
	}
}

// allBut is a bounding set with every capability up to 40 but the given.
func allBut(bits ...uint) uint64 {
	have := uint64(1)<<41 - 1
	for _, b := range bits {
		have &^= 1 << b
	}
	return have
}

func TestFilterSpecDropsOnlyTheCapabilitiesTheHostLacks(t *testing.T) {
	spec := `{"ociVersion":"1.0.2","process":{"args":["/sbin/init"],"capabilities":{` +
		`"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_SYS_ADMIN","CAP_FUTURE_THING"],` +
		`"effective":["CAP_SYS_RESOURCE","CAP_NET_ADMIN"],"permitted":["CAP_SYS_RESOURCE"]}},"root":{"path":"rootfs"}}`
	out, changed, err := filterSpec([]byte(spec), true, allBut(24))
	if err != nil || !changed {
		t.Fatalf("filterSpec = changed %v, %v; want a change", changed, err)
	}
	var got struct {
		OCIVersion string `json:"ociVersion"`
		Process    struct {
			Args         []string            `json:"args"`
			Capabilities map[string][]string `json:"capabilities"`
		} `json:"process"`
		Root struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"bounding":  {"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_FUTURE_THING"}, // an unknown name is kept
		"effective": {"CAP_NET_ADMIN"},
		"permitted": {},
	}
	for set, caps := range want {
		if !slices.Equal(got.Process.Capabilities[set], caps) {
			t.Errorf("%s = %q, want %q", set, got.Process.Capabilities[set], caps)
		}
	}
	if got.OCIVersion != "1.0.2" || got.Root.Path != "rootfs" || !slices.Equal(got.Process.Args, []string{"/sbin/init"}) {
		t.Errorf("the rest of the spec changed: %s", out)
	}

	if out, changed, err := filterSpec([]byte(spec), true, allBut()); err != nil || changed || string(out) != spec {
		t.Errorf("a host with every capability: changed %v, %v, %s; want the spec untouched", changed, err, out)
	}
}

func TestFilterSpecEditsExecsProcessFileAtItsTop(t *testing.T) {
	proc := `{"args":["sh"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}`
	out, changed, err := filterSpec([]byte(proc), false, allBut(24))
	if err != nil || !changed {
		t.Fatalf("filterSpec = changed %v, %v", changed, err)
	}
	var got struct {
		Capabilities map[string][]string `json:"capabilities"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Capabilities["bounding"], []string{"CAP_KILL"}) {
		t.Errorf("bounding = %q, want [CAP_KILL]", got.Capabilities["bounding"])
	}
	for _, doc := range []string{`{"args":["sh"]}`, `{"process":{"args":["sh"]}}`, `{"capabilities":null}`} {
		if _, changed, err := filterSpec([]byte(doc), doc[2] == 'p', allBut(24)); err != nil || changed {
			t.Errorf("filterSpec(%s) = changed %v, %v; want nothing to do", doc, changed, err)
		}
	}
	if _, _, err := filterSpec([]byte(`{"process":`), true, 0); err == nil {
		t.Error("a truncated spec gave no error")
	}
}

func TestFilterFileKeepsTheFilesModeAndRewritesOnlyWhenNeeded(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.json")
	spec := `{"process":{"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}}`
	if err := os.WriteFile(file, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := filterFile(file, true, allBut()); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(file); string(data) != spec {
		t.Errorf("a spec with nothing to remove was rewritten: %s", data)
	}
	if err := filterFile(file, true, allBut(24)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(file)
	if want := `{"process":{"capabilities":{"bounding":["CAP_KILL"]}}}`; string(data) != want {
		t.Errorf("file = %s, want %s", data, want)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestBoundingSetIsReadFromTheStatusFile(t *testing.T) {
	status := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(status, []byte("Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	have, err := boundingSet(status)
	if err != nil || have != 0x1fffeffffff {
		t.Fatalf("boundingSet = %#x, %v", have, err)
	}
	if have&(1<<capBits["CAP_SYS_RESOURCE"]) != 0 {
		t.Error("CAP_SYS_RESOURCE read as present")
	}
	if err := os.WriteFile(status, []byte("Name:\tx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := boundingSet(status); err == nil {
		t.Error("a status without CapBnd gave no error")
	}
}

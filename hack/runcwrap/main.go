// Command runcwrap runs runc with the capabilities that the host's bounding
// set lacks removed from what a container asks for.
//
// Docker 20.10 (Debian's docker.io) gives a --privileged container every
// capability it knows, and kind runs every node that way. On a host whose
// own bounding set lacks one of them (some virtual machines drop
// CAP_SYS_RESOURCE), runc then fails with "unable to apply caps: operation
// not permitted" and no kind node starts. hack/docker-up.sh installs this
// wrapper as dockerd's default runtime only on such a host: it edits the
// OCI bundle's config.json (create, run) or the process file (exec) to keep
// only capabilities the host has, then runs runc with the same arguments.
// A container can never hold a capability outside the host's bounding set,
// so the wrapper takes nothing away that the container could have had.
//
// Usage (set by docker-up.sh in /etc/docker/daemon.json):
//
//	runcwrap [runc arguments]
//
// The real runc is RUNCWRAP_RUNC, or runc on PATH after the wrapper's own
// directory.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runcwrap:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	have, err := boundingSet("/proc/self/status")
	if err != nil {
		return err
	}
	if file, top := specFile(args); file != "" {
		if err := filterFile(file, top, have); err != nil {
			return err
		}
	}
	runc, err := realRunc()
	if err != nil {
		return err
	}
	return syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
}

// realRunc finds the runc to run: RUNCWRAP_RUNC, or the first runc on PATH
// that is not this wrapper.
func realRunc() (string, error) {
	if p := os.Getenv("RUNCWRAP_RUNC"); p != "" {
		return p, nil
	}
	self, _ := os.Executable()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "runc")
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		if same, _ := filepath.EvalSymlinks(p); same == self {
			continue
		}
		return p, nil
	}
	return "", errors.New("no runc on PATH; set RUNCWRAP_RUNC")
}

// runc's global options that take a value, as separate arguments.
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

// specFile returns the file of runc's arguments that asks for
// capabilities, and whether the capabilities sit under "process" in it
// (a bundle's config.json) or at its top (exec's process file); "" when
// the command starts nothing.
func specFile(args []string) (file string, underProcess bool) {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			break
		}
		if globalWithValue[a] {
			i++
		}
	}
	if i >= len(args) {
		return "", false
	}
	cmd, rest := args[i], args[i+1:]
	switch cmd {
	case "create", "run":
		bundle := flagValue(rest, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		return filepath.Join(bundle, "config.json"), true
	case "exec":
		if p := flagValue(rest, "--process", "-p"); p != "" {
			return p, false
		}
	}
	return "", false
}

// flagValue returns the value of the first of the named flags in args,
// written as "--name value" or "--name=value".
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v
			}
		}
	}
	return ""
}

// filterFile rewrites file with the capabilities outside have removed;
// it leaves a file it has nothing to remove from untouched.
func filterFile(file string, underProcess bool, have uint64) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, changed, err := filterSpec(data, underProcess, have)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !changed {
		return nil
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	return os.WriteFile(file, out, st.Mode().Perm())
}

// filterSpec removes from the capability sets of an OCI spec (or process)
// the capabilities whose bits are not in have. It reports whether it
// removed any; a capability whose name it does not know is kept.
func filterSpec(data []byte, underProcess bool, have uint64) ([]byte, bool, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, false, err
	}
	proc := doc
	if underProcess {
		raw, ok := doc["process"]
		if !ok {
			return data, false, nil
		}
		proc = nil // a map of its own: unmarshalling into doc would merge into it
		if err := json.Unmarshal(raw, &proc); err != nil {
			return nil, false, fmt.Errorf("process: %w", err)
		}
	}
	raw, ok := proc["capabilities"]
	if !ok || string(raw) == "null" {
		return data, false, nil
	}
	var sets map[string][]string
	if err := json.Unmarshal(raw, &sets); err != nil {
		return nil, false, fmt.Errorf("capabilities: %w", err)
	}
	changed := false
	for name, caps := range sets {
		kept := caps[:0:0]
		for _, c := range caps {
			if bit, known := capBits[c]; known && have&(1<<bit) == 0 {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		sets[name] = kept
	}
	if !changed {
		return data, false, nil
	}
	var err error
	if proc["capabilities"], err = json.Marshal(sets); err != nil {
		return nil, false, err
	}
	if underProcess {
		if doc["process"], err = json.Marshal(proc); err != nil {
			return nil, false, err
		}
	}
	out, err := json.Marshal(doc)
	return out, true, err
}

// boundingSet reads CapBnd from a /proc/<pid>/status file.
func boundingSet(status string) (uint64, error) {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("%s has no CapBnd line", status)
}

// capBits are the Linux capabilities by name (linux/capability.h).
var capBits = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7,
	"CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

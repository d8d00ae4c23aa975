// Command release makes the parts of a release that need more than a shell
// (make release):
//
//	go run ./hack/release chart -version v1.2.3 -out dist/release
//	go run ./hack/release krew -version v1.2.3 -sums dist/release/SHA256SUMS -out dist/krew/loops.yaml
//
// chart packages charts/loop-operator with its version and appVersion set
// (Helm's chart version without the leading v); krew writes the krew
// manifest of kubectl loops from the checksums of its archives,
// kubectl-loops_<os>_<arch>.tar.gz.
package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"helm.sh/helm/v3/pkg/action"
)

//go:embed krew.yaml.tmpl
var krewTemplate string

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: release chart|krew [flags]")
	}
	fs := flag.NewFlagSet("release "+args[0], flag.ContinueOnError)
	version := fs.String("version", "", "the release's version, v1.2.3")
	dst := fs.String("out", "", "chart: the folder of the package; krew: the manifest to write")
	chart := fs.String("chart", "charts/loop-operator", "chart: the chart's folder")
	sums := fs.String("sums", "dist/release/SHA256SUMS", "krew: the checksums of the plugin's archives (sha256sum's format)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(*version) || *dst == "" {
		return fmt.Errorf("need -version vX.Y.Z (got %q) and -out", *version)
	}
	switch args[0] {
	case "chart":
		p := action.NewPackage()
		p.Version, p.AppVersion, p.Destination = strings.TrimPrefix(*version, "v"), *version, *dst
		if err := os.MkdirAll(*dst, 0o755); err != nil {
			return err
		}
		path, err := p.Run(*chart, nil)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "packaged", path)
		return nil
	case "krew":
		f, err := os.Open(*sums)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := Krew(*version, f)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*dst, b, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(out, "wrote", *dst)
		return nil
	}
	return fmt.Errorf("unknown command %q: want chart or krew", args[0])
}

// Platform is one archive of the plugin.
type Platform struct{ OS, Arch, Archive, SHA256 string }

// krewPlatforms are the archives a release must have.
var krewPlatforms = []string{"darwin_amd64", "darwin_arm64", "linux_amd64", "linux_arm64"}

var archiveName = regexp.MustCompile(`^kubectl-loops_([a-z]+)_([a-z0-9]+)\.tar\.gz$`)

// Krew fills the krew manifest from sha256sum's output (one "<hex>  <file>"
// a line); it fails unless every platform of krewPlatforms has an archive.
func Krew(version string, sums io.Reader) ([]byte, error) {
	byPlatform := map[string]Platform{}
	sc := bufio.NewScanner(sums)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		name := strings.TrimPrefix(filepath.Base(fields[1]), "*")
		m := archiveName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fields[0]) {
			return nil, fmt.Errorf("%s: %q is not a SHA-256", name, fields[0])
		}
		byPlatform[m[1]+"_"+m[2]] = Platform{OS: m[1], Arch: m[2], Archive: name, SHA256: fields[0]}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var ps []Platform
	for _, p := range krewPlatforms {
		pl, ok := byPlatform[p]
		if !ok {
			return nil, fmt.Errorf("no archive kubectl-loops_%s.tar.gz in the checksums", p)
		}
		ps = append(ps, pl)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].OS+ps[i].Arch < ps[j].OS+ps[j].Arch })
	t, err := template.New("krew").Option("missingkey=error").Parse(krewTemplate)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = t.Execute(&buf, struct {
		Version   string
		Platforms []Platform
	}{version, ps})
	return buf.Bytes(), err
}

// Package packaging builds the agent's Linux packages (.deb, .rpm) from
// packaging/nfpm.yaml with the nfpm library, so a release needs only Go and
// the module cache: no nfpm binary, no rpmbuild, no dpkg-deb.
//
// The same directory holds the container image (Dockerfile) and the
// Kubernetes manifests (kubernetes/); their tests live here too.
package packaging

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// BuildAgent compiles cmd/agent as the packages ship it: static
// (CGO_ENABLED=0), -trimpath, stripped, version stamped. root is the
// repository root.
func BuildAgent(root, out, version, goarch string) error {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version,
		"-o", out, "./cmd/agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/agent: %v\n%s", err, b)
	}
	return nil
}

// Options says what Build packages.
type Options struct {
	Root    string   // repository root: relative paths in the config are relative to it
	Config  string   // nfpm config; default Root/packaging/nfpm.yaml
	Binary  string   // the agent binary to ship (see BuildAgent)
	Version string   // package version, starting with a digit ("1.2.3", "1.2.3-rc1")
	Arch    string   // GOARCH; default runtime.GOARCH (nfpm maps it to deb/rpm names)
	Formats []string // "deb", "rpm"; default both
	OutDir  string   // where the packages go
}

// Build writes one package per format into OutDir and returns their paths.
func Build(o Options) ([]string, error) {
	if o.Root == "" || o.Binary == "" || o.OutDir == "" {
		return nil, errors.New("packaging: Root, Binary and OutDir are required")
	}
	o.Version = strings.TrimPrefix(o.Version, "v")
	if o.Version == "" || o.Version[0] < '0' || o.Version[0] > '9' {
		return nil, fmt.Errorf("packaging: version %q must start with a digit (deb and rpm need it)", o.Version)
	}
	if o.Config == "" {
		o.Config = filepath.Join(o.Root, "packaging", "nfpm.yaml")
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if len(o.Formats) == 0 {
		o.Formats = []string{"deb", "rpm"}
	}
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, err
	}
	if o.Root, err = filepath.Abs(o.Root); err != nil {
		return nil, err
	}
	vars := map[string]string{"VERSION": o.Version, "GOARCH": o.Arch, "OUTPOST_BINARY": bin}
	cfg, err := nfpm.ParseFileWithEnvMapping(o.Config, func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		return nil, fmt.Errorf("packaging: %s: %w", o.Config, err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	var out []string
	for _, format := range o.Formats {
		p, err := nfpm.Get(format)
		if err != nil {
			return nil, err
		}
		info, err := cfg.Get(format)
		if err != nil {
			return nil, err
		}
		resolve(o.Root, info)
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", format, err)
		}
		name := filepath.Join(o.OutDir, p.ConventionalFileName(info))
		if err := write(name, func(f *os.File) error { return p.Package(info, f) }); err != nil {
			return nil, fmt.Errorf("packaging %s: %w", format, err)
		}
		out = append(out, name)
	}
	return out, nil
}

// resolve makes the config's relative source paths relative to root, as the
// nfpm CLI would when run from the repository root.
func resolve(root string, info *nfpm.Info) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	for _, c := range info.Contents {
		if c.Type != "dir" && c.Type != "symlink" {
			c.Source = abs(c.Source)
		}
	}
	s := &info.Scripts
	s.PreInstall, s.PostInstall = abs(s.PreInstall), abs(s.PostInstall)
	s.PreRemove, s.PostRemove = abs(s.PreRemove), abs(s.PostRemove)
}

func write(name string, fill func(*os.File) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		os.Remove(name)
		return err
	}
	return f.Close()
}

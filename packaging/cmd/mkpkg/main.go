// Command mkpkg builds the agent's .deb and .rpm from packaging/nfpm.yaml with
// the nfpm library (offline, from the module cache). Run it from anywhere in
// the repository:
//
//	go run ./packaging/cmd/mkpkg -version 1.2.3                  # both, into dist/
//	go run ./packaging/cmd/mkpkg -version 1.2.3 -arch arm64 -formats deb
//	go run ./packaging/cmd/mkpkg -version 1.2.3 -binary bin/agent  # ship a prebuilt binary
//
// Without -binary it builds cmd/agent static (CGO_ENABLED=0 -trimpath) into
// the output directory first. SOURCE_DATE_EPOCH, if set, fixes the file times
// (reproducible packages).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-agent/outpost/packaging"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

func run() error {
	version := flag.String("version", "", "package version, e.g. 1.2.3 (a leading v is dropped)")
	arch := flag.String("arch", "", "GOARCH to build for (default: this machine's)")
	formats := flag.String("formats", "deb,rpm", "comma-separated: deb, rpm")
	binary := flag.String("binary", "", "ship this agent binary instead of building one")
	out := flag.String("out", "dist", "output directory (relative to the repository root)")
	flag.Parse()
	if *version == "" {
		return fmt.Errorf("-version is required")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	outDir := *out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	bin := *binary
	if bin == "" {
		bin = filepath.Join(outDir, "outpost-agent")
		if err := packaging.BuildAgent(root, bin, strings.TrimPrefix(*version, "v"), *arch); err != nil {
			return err
		}
	}
	paths, err := packaging.Build(packaging.Options{
		Root: root, Binary: bin, Version: *version, Arch: *arch,
		Formats: strings.Split(*formats, ","), OutDir: outDir,
	})
	for _, p := range paths {
		fmt.Println(p)
	}
	return err
}

// repoRoot is the nearest directory upwards holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the current directory")
		}
		dir = parent
	}
}

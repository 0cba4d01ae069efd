package config

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadKeyFile: any file content gives a 32-byte key (the raw bytes, or
// the 64 hex characters decoded) or an error, never a panic; a file others
// may read is refused whatever it holds; an error never quotes the key
// material.
func FuzzReadKeyFile(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), uint16(0))
	f.Add([]byte(strings.Repeat("ab", 32)+"\n"), uint16(0))
	f.Add([]byte(" "+strings.Repeat("C0", 32)+"\r\n"), uint16(0))
	f.Add([]byte(strings.Repeat("zz", 32)), uint16(0))
	f.Add([]byte(strings.Repeat("ab", 31)+"+1"), uint16(0))
	f.Add([]byte("short"), uint16(0))
	f.Add([]byte{}, uint16(0))
	f.Add(make([]byte, 32), uint16(0o044))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte, others uint16) {
		path := filepath.Join(dir, "key")
		mode := os.FileMode(0o600 | others&0o077)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		k, err := ReadKeyFile(path)
		if mode&0o077 != 0 {
			if err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("mode %v: key %x, error %v", mode, k, err)
			}
			return
		}
		trimmed := strings.TrimSpace(string(content))
		if err != nil {
			if len(content) == 32 {
				t.Fatalf("32 raw bytes refused: %v", err)
			}
			if w, herr := hex.DecodeString(trimmed); herr == nil && len(w) == 32 {
				t.Fatalf("64 hex characters refused: %v", err)
			}
			if len(trimmed) >= 8 && strings.Contains(err.Error(), trimmed) {
				t.Fatalf("the error quotes the file: %v", err)
			}
			return
		}
		if len(k) != 32 {
			t.Fatalf("a key of %d bytes", len(k))
		}
		if len(content) == 32 {
			if !bytes.Equal(k, content) {
				t.Fatalf("raw key %x read as %x", content, k)
			}
			return
		}
		if w, herr := hex.DecodeString(trimmed); herr != nil || !bytes.Equal(k, w) {
			t.Fatalf("%q read as %x (hex: %x, %v)", content, k, w, herr)
		}
	})
}

// formatByteSize writes n with the largest unit that divides it exactly,
// binary units first: what an operator would write for it.
func formatByteSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// FuzzParseByteSize: a size is never negative and never wraps (it is at
// most 2^62 bytes, whatever the unit); it reads back from the form
// formatByteSize writes; a plain number is that many bytes; and an
// accepted size with its unit spelt as "B" reads the same.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "0B", "-0", "1048576", "512KiB", "64MiB", "1GiB", "10MB", " 2 GiB ", "4TiB", "4194304TiB",
		"4611686018427387904", "4611686018427387905", "9223372036854775807", "-1", "1.5GiB", "GiB", "1XB", "+7KB", "1 B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseByteSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: error %v with size %d", s, err, n)
			}
			if d, derr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); derr == nil && d >= 0 && d <= 1<<62 {
				t.Fatalf("%q: a plain size refused: %v", s, err)
			}
			return
		}
		if n < 0 || n > 1<<62 {
			t.Fatalf("%q is %d bytes", s, n)
		}
		if d, derr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); derr == nil && d != n {
			t.Fatalf("%q: a plain number read as %d", s, n)
		}
		if back, err := ParseByteSize(formatByteSize(n)); err != nil || back != n {
			t.Fatalf("%q = %d, written %q, read back %d, %v", s, n, formatByteSize(n), back, err)
		}
		if back, err := ParseByteSize(strconv.FormatInt(n, 10) + "B"); err != nil || back != n {
			t.Fatalf("%q = %d, as %dB read back %d, %v", s, n, n, back, err)
		}
	})
}

package journal

import "testing"

func BenchmarkAllZero(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if !AllZero(buf) {
			b.Fatal("not zero")
		}
	}
}

func BenchmarkLastNonZero(b *testing.B) {
	buf := make([]byte, 1<<20)
	buf[10] = 1
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if LastNonZero(buf) != 10 {
			b.Fatal("wrong")
		}
	}
}

// TestZeroScans: a single non-zero byte anywhere (chunk edges included)
// is found by both, whatever the length.
func TestZeroScans(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 4095, 4096, 4097, 65535, 65536, 65537, 200_000} {
		b := make([]byte, n)
		if !AllZero(b) || LastNonZero(b) != -1 {
			t.Fatalf("len %d zeros: AllZero %v, LastNonZero %d", n, AllZero(b), LastNonZero(b))
		}
		for _, i := range []int{0, 1, n / 2, n - 4097, n - 4096, n - 65536, n - 1} {
			if i < 0 || i >= n {
				continue
			}
			b[i] = 0x80
			if AllZero(b) || LastNonZero(b) != i {
				t.Errorf("len %d, byte %d set: AllZero %v, LastNonZero %d", n, i, AllZero(b), LastNonZero(b))
			}
			b[i] = 0
		}
	}
}

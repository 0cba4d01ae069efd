//go:build linux

package powerfs

import (
	"syscall"
)

const pageSize = 4096

// fileState is the volatile state of one backing file (one inode): what
// the file looks like to its readers, as a difference from the backing
// file.
//
// The file's logical contents at offset o < size are:
//   - pages[o/pageSize][o%pageSize] if that page is in the overlay;
//   - else the backing file's byte at o, if o < floor;
//   - else zero.
//
// durable is the backing file's size. floor is the smallest size the file
// had since the last fsync (so floor <= durable): a truncation below the
// backing size followed by a growth must read zeros, not the old bytes
// still in the backing file. Overlay pages hold the whole page's logical
// contents (filled from the backing file when first written) and are
// zero past size.
//
// All methods are called with FS.mu held.
type fileState struct {
	name    string // path in the mount when last opened, for reports
	size    int64
	durable int64
	floor   int64
	pages   map[int64][]byte
}

func (s *fileState) sizePending() bool { return s.size != s.durable || s.floor != s.durable }

func (s *fileState) dirty() bool { return len(s.pages) > 0 || s.sizePending() }

// pendingBytes is the overlay's data not yet fsynced: its pages, clipped
// to the file size.
func (s *fileState) pendingBytes() int64 {
	var n int64
	for p := range s.pages {
		n += max(0, min(pageSize, s.size-p*pageSize))
	}
	return n
}

// fillFromBacking reads the logical contents of [off, off+len(dst)) that
// come from the backing file (the part below floor) into dst and zeroes
// the rest. Overlay pages are applied by the caller.
func (s *fileState) fillFromBacking(fd int, dst []byte, off int64) error {
	n := 0
	if off < s.floor {
		want := int(min(int64(len(dst)), s.floor-off))
		for n < want {
			m, err := syscall.Pread(fd, dst[n:want], off+int64(n))
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if m == 0 {
				break // backing shorter than we thought: zeros
			}
			n += m
		}
	}
	clear(dst[n:])
	return nil
}

// read fills dest with the logical contents at off and returns how many
// bytes there are (short at the end of the file).
func (s *fileState) read(fd int, dest []byte, off int64) (int, error) {
	if off >= s.size || len(dest) == 0 {
		return 0, nil
	}
	n := int(min(int64(len(dest)), s.size-off))
	dest = dest[:n]
	if err := s.fillFromBacking(fd, dest, off); err != nil {
		return 0, err
	}
	for p := off / pageSize; p*pageSize < off+int64(n); p++ {
		pg, ok := s.pages[p]
		if !ok {
			continue
		}
		ps := p * pageSize
		lo, hi := max(off, ps), min(off+int64(n), ps+pageSize)
		copy(dest[lo-off:hi-off], pg[lo-ps:hi-ps])
	}
	return n, nil
}

// page returns overlay page p, creating it from the logical contents.
func (s *fileState) page(fd int, p int64) ([]byte, error) {
	if pg, ok := s.pages[p]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	ps := p * pageSize
	if ps < s.size {
		end := min(int64(pageSize), s.size-ps)
		if err := s.fillFromBacking(fd, pg[:end], ps); err != nil {
			return nil, err
		}
	}
	if s.pages == nil {
		s.pages = map[int64][]byte{}
	}
	s.pages[p] = pg
	return pg, nil
}

// write puts data at off into the overlay.
func (s *fileState) write(fd int, data []byte, off int64) error {
	end := off + int64(len(data))
	for p := off / pageSize; p*pageSize < end; p++ {
		pg, err := s.page(fd, p)
		if err != nil {
			return err
		}
		ps := p * pageSize
		lo, hi := max(off, ps), min(end, ps+pageSize)
		copy(pg[lo-ps:hi-ps], data[lo-off:hi-off])
	}
	if end > s.size {
		s.size = end
	}
	return nil
}

// truncate sets the logical size.
func (s *fileState) truncate(size int64) {
	if size < s.size {
		for p, pg := range s.pages {
			ps := p * pageSize
			switch {
			case ps >= size:
				delete(s.pages, p)
			case ps+pageSize > size:
				clear(pg[size-ps:])
			}
		}
		s.floor = min(s.floor, size)
	}
	s.size = size
}

// sync applies the overlay to the backing file through fd and returns the
// data bytes written.
func (s *fileState) sync(fd int, datasync bool) (int64, error) {
	if !s.dirty() {
		if datasync {
			return 0, syscall.Fdatasync(fd)
		}
		return 0, nil
	}
	if s.floor < s.durable {
		if err := syscall.Ftruncate(fd, s.floor); err != nil {
			return 0, s.resync(fd, err)
		}
		s.durable = s.floor
	}
	if s.size != s.durable {
		if err := syscall.Ftruncate(fd, s.size); err != nil {
			return 0, s.resync(fd, err)
		}
		s.durable = s.size
	}
	var n int64
	for p, pg := range s.pages {
		ps := p * pageSize
		m := min(int64(pageSize), s.size-ps)
		if m <= 0 {
			continue
		}
		if err := pwriteAll(fd, pg[:m], ps); err != nil {
			return n, s.resync(fd, err)
		}
		n += m
	}
	if datasync {
		if err := syscall.Fdatasync(fd); err != nil {
			return n, s.resync(fd, err)
		}
	}
	s.pages = nil
	s.floor = s.size
	return n, nil
}

// resync re-reads the backing size after a failed sync; the overlay stays
// and still describes the file correctly (the region the failed sync may
// have zeroed or extended is at or past floor, or covered by pages).
func (s *fileState) resync(fd int, err error) error {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) == nil {
		s.durable = st.Size
		s.floor = min(s.floor, s.durable)
	}
	return err
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		m, err := syscall.Pwrite(fd, b, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[m:], off+int64(m)
	}
	return nil
}

package localapi

import "sync/atomic"

// budget is the process's allowance of request-body bytes held at once
// (Config.BodyBytesInFlight), shared by every connection and both
// servers. A request takes its share before it reads its body and gives
// it back once answered; when the share is not there, it is answered 503
// at once instead of waiting, so the bytes held never pass the budget,
// however many callers send at once.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports that they are not free.
func (b *budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *budget) give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// inUse is the bytes reserved now.
func (b *budget) inUse() int64 { return b.used.Load() }

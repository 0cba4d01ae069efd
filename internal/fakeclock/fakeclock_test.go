package fakeclock

import (
	"context"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestAfterFiresWhenDue(t *testing.T) {
	c := New(t0)
	ch := c.After(time.Second)
	if n := c.Waiters(); n != 1 {
		t.Fatalf("%d waiters, want 1", n)
	}
	c.Advance(999 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Millisecond)
	if got := <-ch; !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("fired at %v", got)
	}
	if n := c.Waiters(); n != 0 {
		t.Fatalf("%d waiters after firing", n)
	}
	if got := <-c.After(0); !got.Equal(c.Now()) {
		t.Fatal("After(0) does not fire at once")
	}
}

// BlockUntil returns when the code under test sleeps, whenever that is.
func TestBlockUntilWaitsForTheSleeper(t *testing.T) {
	c := New(t0)
	slept := make(chan struct{})
	go func() {
		<-c.After(time.Minute)
		close(slept)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !c.AdvanceToNext() || !c.Now().Equal(t0.Add(time.Minute)) {
		t.Fatalf("AdvanceToNext moved to %v", c.Now())
	}
	<-slept
	short, stop := context.WithCancel(context.Background())
	stop()
	if err := c.BlockUntil(short, 1); err == nil {
		t.Fatal("BlockUntil returned with no waiter")
	}
}

// Jump moves the wall clock only: a pending wait keeps its duration.
func TestJumpKeepsPendingDurations(t *testing.T) {
	c := New(t0)
	ch := c.After(time.Minute)
	c.Jump(time.Hour)
	if !c.Pending(time.Minute) {
		t.Fatal("the wait lost its duration")
	}
	c.Advance(time.Minute)
	<-ch
}

package github

import (
	"context"
	"sync"
	"time"
)

// GitHub's limits on content-creating requests (its secondary rate
// limits): at most 80 a minute and 500 an hour. previewd counts every
// write (create, edit, delete) against them.
const (
	DefaultWritesPerMinute = 80
	DefaultWritesPerHour   = 500
)

// writeBudget is a sliding-window count of the writes sent in the last
// minute and hour.
type writeBudget struct {
	mu        sync.Mutex
	perMinute int
	perHour   int
	sent      []time.Time // oldest first, the last hour's
}

// take records a write at now if both windows have room; otherwise it
// says when the next write may go.
func (b *writeBudget) take(now time.Time) (ok bool, next time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	hourAgo, minuteAgo := now.Add(-time.Hour), now.Add(-time.Minute)
	i := 0
	for i < len(b.sent) && !b.sent[i].After(hourAgo) {
		i++
	}
	b.sent = b.sent[i:]
	inMinute := 0
	for _, t := range b.sent {
		if t.After(minuteAgo) {
			inMinute++
		}
	}
	switch {
	case b.perHour > 0 && len(b.sent) >= b.perHour:
		return false, b.sent[len(b.sent)-b.perHour].Add(time.Hour)
	case b.perMinute > 0 && inMinute >= b.perMinute:
		return false, b.sent[len(b.sent)-b.perMinute].Add(time.Minute)
	}
	b.sent = append(b.sent, now)
	return true, time.Time{}
}

// turns orders the comment writes waiting to be sent: one at a time,
// writes of a final state (ready, failed, removed) before those of a
// passing one (deploying, being removed), first come first served within
// each.
type turns struct {
	mu      sync.Mutex
	busy    bool
	waiting [2][]chan struct{} // [0]: final, [1]: passing
}

func (t *turns) acquire(ctx context.Context, final bool) error {
	lane := 1
	if final {
		lane = 0
	}
	t.mu.Lock()
	if !t.busy && len(t.waiting[0]) == 0 && (final || len(t.waiting[1]) == 0) {
		t.busy = true
		t.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	t.waiting[lane] = append(t.waiting[lane], ch)
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		defer t.mu.Unlock()
		for i, w := range t.waiting[lane] {
			if w == ch {
				t.waiting[lane] = append(t.waiting[lane][:i], t.waiting[lane][i+1:]...)
				return ctx.Err()
			}
		}
		// Handed the turn just as ctx ended: pass it on.
		t.releaseLocked()
		return ctx.Err()
	}
}

func (t *turns) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked()
}

func (t *turns) releaseLocked() {
	for lane := range t.waiting {
		if len(t.waiting[lane]) > 0 {
			ch := t.waiting[lane][0]
			t.waiting[lane] = t.waiting[lane][1:]
			close(ch) // the turn passes on; busy stays true
			return
		}
	}
	t.busy = false
}

// UpsertCommentLatest is UpsertComment for a body that may change while
// the write waits: it waits for its turn among comment writes (final
// states first), then calls render for the comment's known id and the
// body of the latest state, and upserts that. A state that changed while
// waiting (a preview Ready before its "deploying" comment was sent) is
// written once, as it is now. written is false when render says there is
// nothing to write.
func (c *Client) UpsertCommentLatest(ctx context.Context, repo string, number int, marker string, final bool,
	render func() (knownID int64, body string, ok bool)) (id int64, written bool, err error) {
	if err := c.turns.acquire(ctx, final); err != nil {
		return 0, false, err
	}
	defer c.turns.release()
	if err := c.heldWrite(); err != nil {
		// Not sent: the caller's next cycle renders the state of then.
		return 0, false, err
	}
	knownID, body, ok := render()
	if !ok {
		return 0, false, nil
	}
	id, err = c.UpsertComment(ctx, repo, number, knownID, marker, body)
	return id, err == nil, err
}

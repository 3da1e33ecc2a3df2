package model

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

var key = Key{Repo: "acme/web", Number: 7}

func open(sha string, s int) Open {
	return Open{Namespace: "pr-web-7", Branch: "b", Title: "t", SHA: sha, Now: at(s)}
}

func TestRecordOpen(t *testing.T) {
	ready := Preview{Repo: "acme/web", Number: 7, Namespace: "pr-web-7", Branch: "b", Title: "t", DesiredSHA: "aaa",
		DeployedSHA: "aaa", Status: StatusReady, SHAFirstSeenAt: at(0), ReadyAt: at(5)}
	failed := ready
	failed.Status, failed.Attempts, failed.NextAttemptAt, failed.LastError = StatusFailed, 2, at(9), "boom"
	deleted := ready
	deleted.Status, deleted.ClosedAt, deleted.Namespace = StatusDeleted, at(20), "old-ns"
	cases := []struct {
		name    string
		cur     Preview
		exists  bool
		o       Open
		changed bool
		check   func(t *testing.T, p Preview)
	}{
		{"first sight is pending at the SHA", Preview{}, false, open("aaa", 0), true, func(t *testing.T, p Preview) {
			if p.Status != StatusPending || p.DesiredSHA != "aaa" || !p.SHAFirstSeenAt.Equal(at(0)) || p.Key() != key {
				t.Errorf("%+v", p)
			}
		}},
		{"the same observation changes nothing", ready, true, open("aaa", 30), false, nil},
		{"a new title is recorded", ready, true, Open{Namespace: "x", Branch: "b", Title: "new", SHA: "aaa", Now: at(30)}, true, func(t *testing.T, p Preview) {
			if p.Title != "new" || p.Namespace != "pr-web-7" || p.Status != StatusReady {
				t.Errorf("%+v", p)
			}
		}},
		{"a new SHA resets the budget", failed, true, open("bbb", 30), true, func(t *testing.T, p Preview) {
			if p.Status != StatusPending || p.DesiredSHA != "bbb" || p.Attempts != 0 || !p.NextAttemptAt.IsZero() || p.LastError != "" || !p.SHAFirstSeenAt.Equal(at(30)) {
				t.Errorf("%+v", p)
			}
		}},
		{"an older observation does not move the SHA back", failed, true, open("zzz", -5), false, nil},
		{"a reopen revives a deleted preview in the new namespace", deleted, true, open("ccc", 30), true, func(t *testing.T, p Preview) {
			if p.Status != StatusPending || p.Namespace != "pr-web-7" || p.DeployedSHA != "" || !p.ClosedAt.IsZero() || !p.ReadyAt.IsZero() {
				t.Errorf("%+v", p)
			}
		}},
		{"an observation before the closing does not revive", deleted, true, open("ccc", 20), false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, changed, err := RecordOpen(tc.cur, tc.exists, key, tc.o)
			if err != nil || changed != tc.changed {
				t.Fatalf("changed %v err %v, want changed %v", changed, err, tc.changed)
			}
			if !changed && p != tc.cur {
				t.Errorf("unchanged record differs: %+v", p)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
	if _, _, err := RecordOpen(Preview{}, false, key, open("", 0)); err == nil {
		t.Error("empty SHA accepted")
	}
}

func TestAttemptLifecycle(t *testing.T) {
	p, _, _ := RecordOpen(Preview{}, false, key, open("aaa", 0))
	if _, err := StartAttempt(p, "bbb", at(1)); !errors.Is(err, ErrStale) {
		t.Errorf("start at a SHA not desired: %v", err)
	}
	p, err := StartAttempt(p, "aaa", at(1))
	if err != nil || p.Status != StatusDeploying || !p.DeployStartedAt.Equal(at(1)) {
		t.Fatalf("start: %+v %v", p, err)
	}
	failed, err := FinishAttempt(p, "aaa", Finish{Outcome: OutcomeFailed, Error: "boom", NextAttemptAt: at(3)}, at(2))
	if err != nil || failed.Status != StatusFailed || failed.Attempts != 1 || !failed.NextAttemptAt.Equal(at(3)) || failed.LastError != "boom" {
		t.Fatalf("failed: %+v %v", failed, err)
	}
	if _, err := FinishAttempt(failed, "aaa", Finish{Outcome: OutcomeReady}, at(3)); !errors.Is(err, ErrStale) {
		t.Errorf("finishing a preview that is not deploying: %v", err)
	}
	cancelled, _ := FinishAttempt(p, "aaa", Finish{Outcome: OutcomeCancelled}, at(2))
	if cancelled.Status != StatusPending || cancelled.Attempts != 0 {
		t.Errorf("a cancelled attempt uses no budget: %+v", cancelled)
	}
	blocked, _ := FinishAttempt(p, "aaa", Finish{Outcome: OutcomeFailed, Blocked: true, Error: "not ours", NextAttemptAt: at(9)}, at(2))
	if blocked.Status != StatusBlocked || blocked.Attempts != 0 || !blocked.NextAttemptAt.IsZero() || blocked.LastError != "not ours" {
		t.Errorf("blocked: %+v", blocked)
	}
	again, _ := StartAttempt(failed, "aaa", at(4))
	ready, err := FinishAttempt(again, "aaa", Finish{Outcome: OutcomeReady}, at(5))
	if err != nil || ready.Status != StatusReady || ready.DeployedSHA != "aaa" || ready.LastError != "" || !ready.ReadyAt.Equal(at(5)) || ready.Attempts != 0 {
		t.Errorf("ready: %+v %v", ready, err)
	}
	if _, err := FinishAttempt(again, "aaa", Finish{Outcome: "exploded"}, at(5)); err == nil {
		t.Error("unknown outcome accepted")
	}
}

func TestBlockAndDeletion(t *testing.T) {
	p, _, _ := RecordOpen(Preview{}, false, key, open("aaa", 0))
	b, err := Block(p, "aaa", "namespace exists")
	if err != nil || b.Status != StatusBlocked || b.LastError != "namespace exists" {
		t.Fatalf("block: %+v %v", b, err)
	}
	if _, err := Block(p, "bbb", "x"); !errors.Is(err, ErrStale) {
		t.Errorf("block at another SHA: %v", err)
	}
	if _, _, err := MarkDeleted(p); !errors.Is(err, ErrStale) {
		t.Errorf("deleted before deleting: %v", err)
	}
	d, changed := MarkDeleting(p, at(10))
	if !changed || d.Status != StatusDeleting || !d.ClosedAt.Equal(at(10)) {
		t.Fatalf("deleting: %+v", d)
	}
	if _, changed := MarkDeleting(d, at(11)); changed {
		t.Error("marking deleting twice changed the record")
	}
	if _, err := StartAttempt(d, "aaa", at(11)); !errors.Is(err, ErrStale) {
		t.Errorf("start while deleting: %v", err)
	}
	gone, changed, err := MarkDeleted(d)
	if err != nil || !changed || gone.Status != StatusDeleted || gone.DeployedSHA != "" {
		t.Fatalf("deleted: %+v %v", gone, err)
	}
	if _, changed, _ := MarkDeleted(gone); changed {
		t.Error("marking deleted twice changed the record")
	}
	redeleting, changed := MarkDeleting(gone, at(30))
	if !changed || redeleting.Status != StatusDeleting || !redeleting.ClosedAt.Equal(at(10)) {
		t.Errorf("a deleted preview whose namespace is found again: %+v", redeleting)
	}
}

func TestReleaseLocked(t *testing.T) {
	for status, want := range map[string]bool{"pending-install": true, "pending-upgrade": true, "pending-rollback": true,
		"uninstalling": true, "deployed": false, "failed": false} {
		if got := (Release{Exists: true, Status: status}).Locked(); got != want {
			t.Errorf("%s: Locked = %v", status, got)
		}
	}
	if (Release{Status: "pending-install"}).Locked() {
		t.Error("a release that does not exist is locked")
	}
}

func TestWaitingForTheImage(t *testing.T) {
	p, _, _ := RecordOpen(Preview{}, false, key, open("aaa", 0))
	p, _ = StartAttempt(p, "aaa", at(1))
	w, err := FinishAttempt(p, "aaa", Finish{Outcome: OutcomeWaiting, WaitingFor: WaitingForImage, Error: "not found", NextAttemptAt: at(20)}, at(5))
	if err != nil || w.Status != StatusWaiting || w.Attempts != 0 || w.WaitingFor != WaitingForImage || !w.WaitingSince.Equal(at(5)) || !w.NextAttemptAt.Equal(at(20)) {
		t.Fatalf("first wait: %+v %v", w, err)
	}
	// A second look that still finds nothing keeps the start of the wait.
	again, _ := StartAttempt(w, "aaa", at(20))
	w2, _ := FinishAttempt(again, "aaa", Finish{Outcome: OutcomeWaiting, WaitingFor: WaitingForImage, Error: "ErrImagePull: not found", NextAttemptAt: at(50)}, at(21))
	if !w2.WaitingSince.Equal(at(5)) || w2.Attempts != 0 || w2.LastError != "not found" || !w2.NextAttemptAt.Equal(at(50)) {
		t.Errorf("second wait: %+v", w2)
	}
	// The image arrives: ready, the wait is over.
	again, _ = StartAttempt(w2, "aaa", at(50))
	r, _ := FinishAttempt(again, "aaa", Finish{Outcome: OutcomeReady}, at(51))
	if r.Status != StatusReady || r.WaitingFor != "" || !r.WaitingSince.IsZero() {
		t.Errorf("ready after waiting: %+v", r)
	}
	// A push forgets the wait.
	pushed, _, _ := RecordOpen(w2, true, key, open("bbb", 60))
	if pushed.WaitingFor != "" || !pushed.WaitingSince.IsZero() || pushed.Status != StatusPending {
		t.Errorf("after a push: %+v", pushed)
	}
	if _, err := FinishAttempt(again, "aaa", Finish{Outcome: OutcomeWaiting}, at(51)); err == nil {
		t.Error("a waiting outcome without what it waits for was accepted")
	}
}

func TestHold(t *testing.T) {
	p, _, _ := RecordOpen(Preview{}, false, key, open("aaa", 0))
	h, err := Hold(p, "aaa", WaitingForChecks, "Waiting for checks: build (queued)", false, at(1))
	if err != nil || h.Status != StatusWaiting || h.WaitingFor != WaitingForChecks || !h.WaitingSince.Equal(at(1)) || h.Attempts != 0 {
		t.Fatalf("hold: %+v %v", h, err)
	}
	h2, _ := Hold(h, "aaa", WaitingForChecks, "Waiting for checks: build (in progress)", false, at(9))
	if !h2.WaitingSince.Equal(at(1)) || h2.LastError != "Waiting for checks: build (in progress)" {
		t.Errorf("a second hold for the same thing keeps its start: %+v", h2)
	}
	r, _ := Hold(h2, "aaa", WaitingForRerun, "not deployed: check build failed", false, at(10))
	if r.WaitingFor != WaitingForRerun || !r.WaitingSince.Equal(at(10)) {
		t.Errorf("a hold for something else starts anew: %+v", r)
	}
	f, _ := Hold(h2, "aaa", WaitingForChecks, "checks did not finish", true, at(20))
	if f.Status != StatusFailed || !f.NextAttemptAt.IsZero() || f.WaitingFor != "" {
		t.Errorf("final hold: %+v", f)
	}
	if _, err := Hold(p, "bbb", WaitingForChecks, "x", false, at(1)); !errors.Is(err, ErrStale) {
		t.Errorf("hold at another SHA: %v", err)
	}
}
